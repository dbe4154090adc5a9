-- examples/luamem.lua: a RAM disk written entirely in Lua: ffi.copy in and
-- out of memory from ublk.shared.  Compare it with backend = "memory" (the
-- same job in C) with `make bench`.
-- Run: sudo build/ublk-lua examples/luamem.lua [SIZE]
local ublk = require "ublk"
local ffi = require "ffi"

local size = ublk.params.parse_size((...) or "256MiB")

local disk = ublk.backend {
  size = size,
  store = ublk.shared(size),
  read = function(self, req)
    ffi.copy(req.buf, self.store.ptr + req.offset, req.length)
  end,
  write = function(self, req)
    ffi.copy(self.store.ptr + req.offset, req.buf, req.length)
  end,
}

return { backend = disk, queues = 2 }
