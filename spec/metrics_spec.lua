-- `stats --prom`'s text (lua/ublk/metrics.lua) from a statistics mapping
-- made here as runtime/queue/stats.h's writer fills it: the exposition
-- format's grammar, histograms cumulative and exact at their bounds, the
-- counts what was written; read back by Prometheus' own Python client
-- parser where Debian's python3-prometheus-client is installed.
local ffi = require "ffi"
local stats = require "ublk.stats"
local metrics = require "ublk.metrics"

local made = require "stats_mapping"
local bucket, mapping = made.bucket, made.mapping

-- The samples: { [name{labels}] = value }, checking each line's grammar.
local function samples(text)
  local out, typed = {}, {}
  for line in text:gmatch("[^\n]+") do
    local tname, ttype = line:match("^# TYPE (%S+) (%S+)$")
    if tname then
      typed[tname] = ttype
    elseif not line:match("^# HELP %S+ .+$") then
      local key, value = line:match("^([%a_:][%w_:]*{[^}]*}) (%S+)$")
      assert.truthy(key, "not a sample line: " .. line)
      assert.truthy(tonumber(value) or value == "+Inf", line)
      local name = key:match("^[^{]+")
      assert.truthy(typed[name] or typed[name:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")],
        "no TYPE before " .. line)
      out[key] = tonumber(value)
    end
  end
  return out
end

describe("ublk.metrics", function()
  local mem, q = mapping(2)
  -- device 4: queue 0 read 1000 x 4 KiB (900 at 10 us, 100 at 3 ms), queue 1
  -- wrote 10 at 40 us and failed 2 requests
  q[0].ops[0], q[0].read_bytes = 1000, 1000 * 4096
  q[0].lat[0][bucket(10000)] = 900
  q[0].lat[0][bucket(3000000)] = 100
  q[1].ops[1], q[1].write_bytes, q[1].errors = 10, 10 * 4096, 2
  q[1].lat[1][bucket(40000)] = 12
  local snap = stats.at(mem):snapshot()
  snap.started = snap.t - 60
  local text = metrics.render({ { id = 4, snap = snap } })

  it("writes the exposition format, counters per queue and op", function()
    local s = samples(text)
    assert.are.equal(1000, s['ublk_requests_total{dev="4",queue="0",op="read"}'])
    assert.are.equal(0, s['ublk_requests_total{dev="4",queue="0",op="write"}'])
    assert.are.equal(10, s['ublk_requests_total{dev="4",queue="1",op="write"}'])
    assert.are.equal(2, s['ublk_request_errors_total{dev="4",queue="1"}'])
    assert.are.equal(4096000, s['ublk_bytes_total{dev="4",queue="0",direction="read"}'])
    assert.are.equal(40960, s['ublk_bytes_total{dev="4",queue="1",direction="write"}'])
    assert.are.equal(60, s['ublk_server_uptime_seconds{dev="4"}'])
    assert.matches("# TYPE ublk_request_duration_seconds histogram\n", text)
  end)

  it("gives real histograms: cumulative, exact at each bound, +Inf = _count", function()
    local s = samples(text)
    local function at(le) return s[('ublk_request_duration_seconds_bucket{dev="4",kind="read",le="%s"}'):format(le)] end
    -- 10 us falls under 16.384 us, not under 8.192 us; 3 ms under 4.194304 ms
    assert.are.equal(0, at("8.192e-06"))
    assert.are.equal(900, at("1.6384e-05"))
    assert.are.equal(900, at("0.002097152"))
    assert.are.equal(1000, at("0.004194304"))
    assert.are.equal(1000, at("+Inf"))
    assert.are.equal(1000, s['ublk_request_duration_seconds_count{dev="4",kind="read"}'])
    local sum = s['ublk_request_duration_seconds_sum{dev="4",kind="read"}']
    assert.truthy(math.abs(sum - (900 * 10e-6 + 100 * 3e-3)) < 0.0625 * sum, sum)
    local last = -1
    for le in text:gmatch('kind="write",le="([^"]+)"') do
      local v = s[('ublk_request_duration_seconds_bucket{dev="4",kind="write",le="%s"}'):format(le)]
      assert.truthy(v >= last, le)
      last = v
    end
    assert.are.equal(12, last)
  end)

  it("is read back by Prometheus' own parser (python3-prometheus-client)", function()
    if os.execute("/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null") ~= 0 then
      pending("python3-prometheus-client is not installed")
      return
    end
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write(text)
    f:close()
    local p = io.popen(("/usr/bin/python3 -c '%s' %s 2>&1"):format([[
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        if s.name.endswith("_count") or (s.name == "ublk_requests_total" and s.value):
            print(fam.type, s.name, s.labels.get("kind") or s.labels.get("op"), s.labels.get("queue", "-"), int(s.value))
]], file))
    local out = p:read("*a")
    p:close()
    os.remove(file)
    assert.matches("counter ublk_requests_total read 0 1000\n", out, 1, true)
    assert.matches("counter ublk_requests_total write 1 10\n", out, 1, true)
    assert.matches("histogram ublk_request_duration_seconds_count read %- 1000\n", out)
    assert.matches("histogram ublk_request_duration_seconds_count write %- 12\n", out)
  end)
end)
