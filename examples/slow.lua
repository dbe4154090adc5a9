-- examples/slow.lua: a disk that answers every request MS milliseconds late
-- without serialising them: handlers are coroutines (async = true), and
-- ublk.sleep waits on the queue's own io_uring, so one queue keeps many
-- requests sleeping at once with no extra threads.
-- Run: sudo build/ublk-lua examples/slow.lua [MS]
local ublk = require "ublk"
local ffi = require "ffi"

local ms = tonumber((...)) or 10
local base = ublk.memory()

-- Per queue: requests in flight now, and the most seen at once.  C-owned
-- memory, so the script that made the device can read it.
local inflight = ublk.shared(4096)

local function delayed(self, req, op)
  local slot = self.slot
  slot[0] = slot[0] + 1
  if slot[0] > slot[1] then slot[1] = slot[0] end
  ublk.sleep(ms)
  slot[0] = slot[0] - 1
  return op(base, req)
end

local disk = ublk.backend {
  size = "64MiB",
  async = true,
  inflight = inflight,
  open = function(self, q)
    self.slot = ffi.cast("uint32_t *", self.inflight.ptr) + 2 * q.id
  end,
  read = function(self, req) return delayed(self, req, base.read) end,
  write = function(self, req) return delayed(self, req, base.write) end,
}

return { backend = disk, queues = 2 }
