-- The statistics mapping as lua/ublk/stats.lua reads it: a layout made
-- here the way runtime/queue/stats.h's writer fills it (same cdef, same bucket
-- rule), and the percentiles and rates it gives.
local ffi = require "ffi"
local stats = require "ublk.stats"

-- runtime/queue/stats.h's ublk_lat_bucket, for the test's own writer
local function bucket(ns)
  if ns < 8 then return ns end
  local msb = math.floor(math.log(ns) / math.log(2) + 1e-9)
  return (msb - 2) * 8 + math.floor(ns / 2 ^ (msb - 3)) % 8
end

local function mapping(nr)
  local size = ffi.sizeof("struct ublk_stats_header") + nr * ffi.sizeof("struct ublk_queue_stats")
  local mem = ffi.new("uint8_t[?]", size)
  local h = ffi.cast("struct ublk_stats_header *", mem)
  h.magic, h.version, h.nr_queues = ffi.C.UBLK_STATS_MAGIC, ffi.C.UBLK_STATS_VERSION, nr
  h.queue_stats_size = ffi.sizeof("struct ublk_queue_stats")
  return mem, ffi.cast("struct ublk_queue_stats *", h + 1)
end

describe("ublk.stats", function()
  it("refuses memory that is not a statistics mapping", function()
    local mem = ffi.new("uint8_t[4096]")
    local r, err = stats.at(mem)
    assert.is_nil(r)
    assert.matches("not a statistics file", err)
  end)

  it("refuses a statistics file whose header claims more queues than it holds", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local mem = mapping(2)
    local h = ffi.cast("struct ublk_stats_header *", mem)
    local whole = ffi.sizeof("struct ublk_stats_header") + 2 * ffi.sizeof("struct ublk_queue_stats")
    -- two queues' worth of file, a header that claims 64: reading queue 2
    -- on would be past the end of the file, a SIGBUS
    h.nr_queues = 64
    local f = assert(io.open(dir .. "/dev7.stats", "wb"))
    f:write(ffi.string(mem, whole))
    f:close()
    local r, err = stats.open(7, dir)
    assert.is_nil(r)
    assert.matches("dev7.stats: its header claims 64 queues", err)
    h.nr_queues = 2
    f = assert(io.open(dir .. "/dev7.stats", "wb"))
    f:write(ffi.string(mem, whole))
    f:close()
    r = assert(stats.open(7, dir))
    assert.are.equal(2, #r:snapshot().queues)
    os.execute("rm -rf " .. dir)
  end)

  it("gives counts and percentiles within a bucket's width, across queues", function()
    local mem, q = mapping(2)
    -- 1000 reads: 900 at 10 us, 90 at 100 us, 10 at 5 ms, split over 2 queues
    for i = 1, 1000 do
      local ns = i <= 900 and 10000 or i <= 990 and 100000 or 5000000
      local b = bucket(ns)
      q[i % 2].lat[0][b] = q[i % 2].lat[0][b] + 1
    end
    q[0].read_bytes, q[1].read_bytes, q[1].errors = 2048000, 2048000, 3
    local s = stats.summary(stats.at(mem):snapshot())
    assert.are.equal(1000, s.read.count)
    assert.are.equal(3, s.errors)
    assert.are.equal(4096000, s.read.bytes)
    local function near(want, got) assert.truthy(math.abs(got - want) / want < 0.07, got) end
    near(10, s.read.p50_us)
    near(100, s.read.p99_us)
    near(5000, s.read.p999_us)
    assert.are.equal(0, s.write.count)
  end)

  it("gives rates over the time between two snapshots", function()
    local mem, q = mapping(1)
    local r = stats.at(mem)
    local a = r:snapshot()
    q[0].lat[1][bucket(20000)] = 500
    q[0].write_bytes = 500 * 4096
    local b = r:snapshot()
    b.t = a.t + 2
    local s = stats.summary(b, a)
    assert.are.equal(250, s.write.iops)
    assert.are.equal(250 * 4096, s.write.bytes_per_s)
  end)
end)
