-- bench/policy.lua: a Lua policy over the C memory backend that decides
-- nothing: it measures what a Lua decision per request costs when the
-- bytes stay in C.  Run: ublk-lua bench/policy.lua [SIZE [COPY]]
-- COPY: the policy's copy (docs/tuning.md); "buffer" lets the delegate
-- fill the tag's buffer the kernel copies from, with no user copy.
local ublk = require "ublk"

local base = ublk.memory()
local size, copy = ...
local disk = ublk.backend {
  size = size or "256MiB", copy = copy,
  read = function(self, req) return base:read(req) end,
  write = function(self, req) return base:write(req) end,
}
return { backend = disk, queues = 2, depth = 128 }
