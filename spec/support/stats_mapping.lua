-- A statistics mapping made in memory the way runtime/queue/stats.h's
-- writer lays it out (same cdef, same bucket rule), for the specs that
-- read one back (stats_spec, metrics_spec).
require "ublk.stats" -- its cdef: struct ublk_stats_header, ublk_queue_stats
local ffi = require "ffi"

local M = {}

-- runtime/queue/stats.h's ublk_lat_bucket
function M.bucket(ns)
  if ns < 8 then return ns end
  local msb = math.floor(math.log(ns) / math.log(2) + 1e-9)
  return (msb - 2) * 8 + math.floor(ns / 2 ^ (msb - 3)) % 8
end

-- nr queues' worth: the memory (keep it referenced) and the first queue's stats
function M.mapping(nr)
  local size = ffi.sizeof("struct ublk_stats_header") + nr * ffi.sizeof("struct ublk_queue_stats")
  local mem = ffi.new("uint8_t[?]", size)
  local h = ffi.cast("struct ublk_stats_header *", mem)
  h.magic, h.version, h.nr_queues = ffi.C.UBLK_STATS_MAGIC, ffi.C.UBLK_STATS_VERSION, nr
  h.queue_stats_size = ffi.sizeof("struct ublk_queue_stats")
  return mem, ffi.cast("struct ublk_queue_stats *", h + 1)
end

return M
