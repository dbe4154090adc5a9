-- The statistics mapping as lua/ublk/stats.lua reads it: a layout made
-- here the way runtime/queue/stats.h's writer fills it (same cdef, same bucket
-- rule), and the percentiles and rates it gives.
local ffi = require "ffi"
local stats = require "ublk.stats"

local made = require "stats_mapping"
local bucket, mapping = made.bucket, made.mapping

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

  it("gives totals since the server started, beside the last interval", function()
    local mem, q = mapping(1)
    local r = stats.at(mem)
    local h = ffi.cast("struct ublk_stats_header *", mem)
    q[0].errors = 3 -- long ago: the last interval has none, the totals do
    q[0].errnos[5], q[0].errnos[110] = 2, 1
    q[0].inflight = 4
    q[0].lat[0][bucket(20000)] = 1000
    q[0].read_bytes = 1000 * 4096
    local a = r:snapshot()
    q[0].lat[0][bucket(20000)] = 1100
    q[0].read_bytes = 1100 * 4096
    local b = r:snapshot()
    b.t = a.t + 1
    b.started = b.t - 100
    h.started_ns = 0
    local last, total = stats.summary(b, a), stats.summary(b)
    assert.are.equal(0, last.errors)
    assert.are.equal(3, total.errors)
    assert.are.equal(100, last.read.count)
    assert.are.equal(1100, total.read.count)
    assert.are.equal(100, total.seconds)
    assert.are.equal(11, total.read.iops)
    local text = require("ublk.cli_stats").text(7, last, total)
    assert.matches("last 1%.00 s\n  read +100 +400 KiB +100 +400 KiB/s +19%.5 us", text)
    assert.matches("since start, 1 min 40 s\n  read +1100 +4%.30 MiB +11 +44%.0 KiB/s", text)
    assert.matches("\n  errors +0\n", text)
    assert.are.same({}, last.errnos)
    assert.are.same({ EIO = 2, ETIMEDOUT = 1 }, total.errnos)
    assert.matches("^dev id 7: 1 queue, 4 requests in flight\n", text)
    assert.matches("\n  errors +3  %(EIO 2, ETIMEDOUT 1%)$", text)
  end)

  it("says bytes, times and durations as a person reads them", function()
    local cs = require "ublk.cli_stats"
    assert.are.equal("0 B", cs.bytes(0))
    assert.are.equal("1023 B", cs.bytes(1023))
    assert.are.equal("1.00 KiB", cs.bytes(1024))
    assert.are.equal("38.9 MiB", cs.bytes(38.9 * 1048576))
    assert.are.equal("1.00 MiB", cs.bytes(1048575)) -- not "1024 KiB"
    assert.are.equal("850 us", cs.time(850))
    assert.are.equal("1.25 ms", cs.time(1250))
    assert.are.equal("3.00 s", cs.time(3e6))
    assert.are.equal("5 min 12 s", cs.duration(312))
  end)

  it("writes JSON without float noise", function()
    local json = require "ublk.json"
    assert.are.equal("172.032", json.encode(172.032))
    assert.are.equal("[0.1, 1e+300, -2.5, 3]", json.encode(setmetatable({ 0.1, 1e300, -2.5, 3 }, json.array)))
    -- and still exactly: what it writes reads back as the same double
    for _, v in ipairs({ 1 / 3, math.pi, 2 ^ 60 + 0.0, 5e-324, 0.1 + 0.2 }) do
      assert.are.equal(v, json.decode(json.encode(v)))
    end
  end)
end)
