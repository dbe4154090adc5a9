-- bench/policy.lua: a Lua policy over the C memory backend that decides
-- nothing: it measures what a Lua decision per request costs when the
-- bytes stay in C.  Run: ublk-lua bench/policy.lua [SIZE]
local ublk = require "ublk"

local base = ublk.memory()
local disk = ublk.backend {
  size = (...) or "256MiB",
  read = function(self, req) return base:read(req) end,
  write = function(self, req) return base:write(req) end,
}
return { backend = disk, queues = 2, depth = 128 }
