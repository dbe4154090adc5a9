-- examples/luamem.lua: a RAM disk written entirely in Lua, in memory from
-- ublk.shared.  req:copy moves each request's data straight between the
-- request and that memory (one copy, by the kernel, where it has user
-- copy); ffi.copy with req.buf would work too, at the cost of a second
-- copy.  Compare it with backend = "memory" (the same job in C) with
-- `make bench`.
-- Run: sudo build/ublk-lua examples/luamem.lua [SIZE]
local ublk = require "ublk"

local size = ublk.params.parse_size((...) or "256MiB")

local disk = ublk.backend {
  size = size,
  store = ublk.shared(size),
  read = function(self, req) return req:copy(self.store.ptr + req.offset) end,
  write = function(self, req) return req:copy(self.store.ptr + req.offset) end,
}

return { backend = disk, queues = 2 }
