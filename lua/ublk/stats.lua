-- ublk.stats: a device's counters and latency histograms (runtime/queue/stats.h),
-- read without disturbing its server: from the shared mapping
-- /run/ublk-lua/devN.stats in any process (`ublk-lua stats`), or from the
-- device's own memory (dev:stats()).  Rates and percentiles come from two
-- snapshots; percentiles are the middle of their histogram bucket (within
-- 6.25%).
local ffi = require "ffi"
require "ublk.libc" -- the C library calls below (ffi.C)
local core = require "ublk.core"
local errno = require "ublk.errno"

ffi.cdef(core.stats_cdef)

local C = ffi.C
local stats = {}

local KINDS = { "read", "write", "other" }
local OPS = {} -- op number -> name, from the runtime's one table
for name, n in pairs(core.ops) do OPS[n] = name end

local Reader = {}
Reader.__index = Reader

local HEADER = ffi.sizeof("struct ublk_stats_header")
local QSIZE = ffi.sizeof("struct ublk_queue_stats")

-- A mapping of `size` bytes (0: our own, trusted) must hold the header
-- and every queue the header claims: reading past its end is a SIGBUS.
local function reader(base, size, owned)
  local h = ffi.cast("struct ublk_stats_header *", base)
  if h.magic ~= C.UBLK_STATS_MAGIC or h.version ~= C.UBLK_STATS_VERSION
      or h.queue_stats_size ~= QSIZE then
    if owned then C.munmap(base, size) end
    return nil, "not a statistics file of this version"
  end
  local nr = tonumber(h.nr_queues)
  if size > 0 and (nr < 1 or nr > 4096 or HEADER + nr * QSIZE > size) then
    if owned then C.munmap(base, size) end
    return nil, ("its header claims %d queues, which %d bytes do not hold (%d + %d per queue)")
      :format(nr, size, HEADER, QSIZE)
  end
  local r = setmetatable({ h = h, size = size, owned = owned, nr = h.nr_queues,
    q = ffi.cast("struct ublk_queue_stats *", ffi.cast("char *", base) + HEADER) }, Reader)
  if owned then ffi.gc(r.h, function(p) C.munmap(p, size) end) end
  return r
end

-- stats.open(id) -> reader | nil, "why": device id's mapping, read-only.
function stats.open(id, dir)
  local path = ("%s/dev%d.stats"):format(dir or core.state_dir(), id)
  local fd = C.open(path, 0) -- O_RDONLY
  if fd < 0 then return nil, path .. ": " .. core.errmsg(ffi.errno()) end
  local f = io.open(path)
  local size = f and f:seek("end")
  if f then f:close() end
  if not size or size < HEADER then C.close(fd) return nil, path .. ": too short" end
  local base = C.mmap(nil, size, 1, 1, fd, 0) -- PROT_READ, MAP_SHARED
  C.close(fd)
  if base == ffi.cast("void *", -1) then return nil, path .. ": cannot map it" end
  local r, err = reader(base, size, true)
  if not r then return nil, path .. ": " .. err end
  return r
end

-- stats.at(address) -> reader of a mapping in this process (dev:stats()).
function stats.at(address)
  return reader(address, 0, false)
end

-- stats.queue(block) -> one queue's counters now (struct ublk_queue_stats *
-- or its address): { ops = {read = n, ...}, errors, errnos = {EIO = n},
-- inflight, read_bytes, write_bytes, counters and gauges (a Lua
-- backend's own, by name), lat = { read = { [bucket] = n }, ... } }
function stats.queue(block)
  local q = ffi.cast("struct ublk_queue_stats *", block)
  local s = { ops = {}, errors = tonumber(q.errors), read_bytes = tonumber(q.read_bytes),
    write_bytes = tonumber(q.write_bytes), inflight = tonumber(q.inflight), errnos = {},
    counters = {}, gauges = {}, lat = {} }
  -- a Lua backend's own, by name: counters (only grow) and gauges
  for c = 0, C.UBLK_STATS_COUNTERS - 1 do
    if q.counter_names[c][0] == 0 then break end
    local name = ffi.string(q.counter_names[c], C.UBLK_STATS_COUNTER_NAME):match("^[^%z]*")
    local into = q.counter_gauge[c] ~= 0 and s.gauges or s.counters
    into[name] = tonumber(q.counters[c])
  end
  -- by name (ublk.errno's, else "errno N"; [0] holds the numbers past the table's end)
  for e = 0, C.UBLK_STATS_ERRNOS - 1 do
    local c = q.errnos[e]
    if c ~= 0 then
      s.errnos[e == 0 and "other" or errno[e] or ("errno " .. e)] = tonumber(c)
    end
  end
  for n, name in pairs(OPS) do s.ops[name] = tonumber(q.ops[n]) end
  for k, kind in ipairs(KINDS) do
    local h = {}
    for b = 0, C.UBLK_LAT_BUCKETS - 1 do
      local c = q.lat[k - 1][b]
      if c ~= 0 then h[b] = tonumber(c) end
    end
    s.lat[kind] = h
  end
  return s
end

-- Copies the counters now: { t = seconds, queues = { { ops = {read = n,
-- ...}, errors, read_bytes, write_bytes, lat = { read = {...}, ... } } } }.
function Reader:snapshot()
  -- started: when the server made the mapping (same clock), for totals
  local snap = { t = core.clock(), started = tonumber(self.h.started_ns) / 1e9, queues = {},
    threads = math.max(1, self.h.threads) }
  for i = 0, self.nr - 1 do
    snap.queues[i + 1] = stats.queue(self.q + i)
  end
  return snap
end

-- stats.bucket_range(b) -> lo, hi: bucket b's range in ns, [lo, hi)
-- (runtime/queue/stats.h's layout: 8 buckets to each power of two)
function stats.bucket_range(b)
  if b < 8 then return b, b + 1 end
  local msb, sub = math.floor(b / 8) + 2, b % 8
  local width = 2 ^ (msb - 3)
  local lo = (8 + sub) * width
  return lo, lo + width
end

-- The middle of bucket b, in ns
local function bucket_ns(b)
  if b < 8 then return b end
  local lo, hi = stats.bucket_range(b)
  return (lo + hi) / 2
end

-- { [bucket] = count } -> count, p50, p99, p99.9 in microseconds
function stats.percentiles(h)
  local n, buckets = 0, {}
  for b, c in pairs(h) do n = n + c; buckets[#buckets + 1] = b end
  if n == 0 then return 0 end
  table.sort(buckets)
  local out, want, seen, i = {}, { 0.5, 0.99, 0.999 }, 0, 1
  for _, b in ipairs(buckets) do
    seen = seen + h[b]
    while want[i] and seen >= want[i] * n do
      out[i] = bucket_ns(b) / 1000
      i = i + 1
    end
  end
  return n, out[1], out[2], out[3]
end

local function round(x, per) return math.floor(x * per + 0.5) / per end

local function minus(b, a)
  if not a then return b end
  local d = {}
  for k, v in pairs(b) do d[k] = v - (a[k] or 0) end
  return d
end

-- stats.summary(now [, before]) -> per op kind { count, iops, bytes,
-- bytes_per_s, p50_us, p99_us, p999_us } and errors, over what happened
-- between the snapshots (since the start without `before`).  Rates are
-- rounded to 0.1 request and 1 byte a second, times to the nanosecond.
function stats.summary(now, before)
  local secs = before and (now.t - before.t) or nil
  -- since the start: over the time since the server made the mapping
  if not before and now.started and now.started > 0 then secs = now.t - now.started end
  local out = { errors = 0, errnos = {}, inflight = 0, counters = {}, gauges = {}, seconds = secs,
    queues = #now.queues / (now.threads or 1), threads = now.threads or 1 }
  for _, kind in ipairs(KINDS) do out[kind] = { hist = {}, bytes = 0 } end
  for i, q in ipairs(now.queues) do
    local p = before and before.queues[i]
    out.errors = out.errors + q.errors - (p and p.errors or 0)
    for name, c in pairs(minus(q.errnos, p and p.errnos)) do
      if c ~= 0 then out.errnos[name] = (out.errnos[name] or 0) + c end
    end
    out.inflight = out.inflight + q.inflight -- now, whatever the interval
    for name, c in pairs(minus(q.counters or {}, p and p.counters)) do
      out.counters[name] = (out.counters[name] or 0) + c
    end
    for name, v in pairs(q.gauges or {}) do out.gauges[name] = (out.gauges[name] or 0) + v end
    out.read.bytes = out.read.bytes + q.read_bytes - (p and p.read_bytes or 0)
    out.write.bytes = out.write.bytes + q.write_bytes - (p and p.write_bytes or 0)
    for _, kind in ipairs(KINDS) do
      local d = minus(q.lat[kind], p and p.lat[kind])
      local h = out[kind].hist
      for b, c in pairs(d) do h[b] = (h[b] or 0) + c end
    end
  end
  for _, kind in ipairs(KINDS) do
    local o = out[kind]
    o.count, o.p50_us, o.p99_us, o.p999_us = stats.percentiles(o.hist)
    o.hist = nil
    if secs and secs > 0 then
      o.iops = round(o.count / secs, 10)
      o.bytes_per_s = round(o.bytes / secs, 1)
    end
  end
  if secs then out.seconds = round(secs, 1000) end
  return out
end

return stats
