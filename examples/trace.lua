-- examples/trace.lua: log every request (op, offset, length, latency) while
-- the C memory backend keeps the data.  Each queue writes its own log,
-- PREFIX.q0, PREFIX.q1, ...: no locks between queues.
-- Run: sudo build/ublk-lua examples/trace.lua [PREFIX]
local ublk = require "ublk"

local prefix = ... or "/tmp/ublk-trace"
local base = ublk.memory()
local clock = ublk.clock

-- (the delegate's method is looked up when the handler runs: on a queue
-- thread `base` is that queue's handle on the C backend)
local function traced(name)
  return function(self, req)
    local t0 = clock()
    local n, err = base[name](base, req)
    self.log:write(("%s %d %d %.1fus %s\n"):format(name, req.offset, req.length,
      (clock() - t0) * 1e6, n and "ok" or err))
    return n, err
  end
end

local disk = ublk.backend {
  size = "64MiB",
  open = function(self, q)
    self.log = assert(io.open(("%s.q%d"):format(prefix, q.id), "w"))
    self.log:setvbuf("line")
  end,
  close = function(self) self.log:close() end,
  read = traced("read"),
  write = traced("write"),
  discard = traced("discard"),
  write_zeroes = traced("write_zeroes"),
}

return { backend = disk, queues = 2 }
