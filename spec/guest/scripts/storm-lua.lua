-- A Lua backend doing its own asynchronous file I/O (ublk.io.pread and
-- pwrite on the queue's io_uring) for the kill storm (storm_spec):
-- FILE [RECOVERY].  FILE must exist and hold 128 MiB; RECOVERY "false"
-- for none.
local ublk = require "ublk"
local path, recovery = ...

local disk = ublk.backend {
  size = "128MiB",
  async = true,
  open = function(self) self.fd = assert(ublk.io.open(path, "rw")) end,
  close = function(self) ublk.io.close(self.fd) end,
  read = function(self, req) return ublk.io.pread(self.fd, req.buf, req.length, req.offset) end,
  write = function(self, req) return ublk.io.pwrite(self.fd, req.buf, req.length, req.offset) end,
}

return { backend = disk, queues = 2, depth = 128, recovery = recovery ~= "false" and "reissue" or false }
