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
  q[1].errnos[5], q[1].errnos[0], q[1].inflight = 1, 1, 3
  -- a Lua backend's own: a counter on both queues, a gauge
  for i = 0, 1 do
    ffi.copy(q[i].counter_names[0], "hits")
    ffi.copy(q[i].counter_names[1], "cached_bytes")
    q[i].counter_gauge[1] = 1
    q[i].counters[0], q[i].counters[1] = 5 + i, 4096 * (i + 1)
  end
  q[1].lat[1][bucket(40000)] = 12
  local snap = stats.at(mem):snapshot()
  snap.started = snap.t - 60
  local text = metrics.render({ { id = 4, snap = snap, recoveries = 2, reloads = 1 } })

  it("writes the exposition format, counters per queue and op", function()
    local s = samples(text)
    assert.are.equal(1000, s['ublk_requests_total{dev="4",queue="0",op="read"}'])
    assert.are.equal(0, s['ublk_requests_total{dev="4",queue="0",op="write"}'])
    assert.are.equal(10, s['ublk_requests_total{dev="4",queue="1",op="write"}'])
    assert.are.equal(2, s['ublk_request_errors_total{dev="4",queue="1"}'])
    assert.are.equal(1, s['ublk_request_errno_total{dev="4",queue="1",errno="EIO"}'])
    assert.are.equal(1, s['ublk_request_errno_total{dev="4",queue="1",errno="other"}'])
    assert.is_nil(s['ublk_request_errno_total{dev="4",queue="0",errno="EIO"}'])
    assert.are.equal(3, s['ublk_requests_inflight{dev="4",queue="1"}'])
    assert.are.equal(0, s['ublk_requests_inflight{dev="4",queue="0"}'])
    assert.are.equal(5, s['ublk_backend_hits_total{dev="4",queue="0"}'])
    assert.are.equal(6, s['ublk_backend_hits_total{dev="4",queue="1"}'])
    assert.are.equal(8192, s['ublk_backend_cached_bytes{dev="4",queue="1"}'])
    assert.matches("# TYPE ublk_backend_hits_total counter\n", text)
    assert.matches("# TYPE ublk_backend_cached_bytes gauge\n", text)
    assert.are.equal(4096000, s['ublk_bytes_total{dev="4",queue="0",direction="read"}'])
    assert.are.equal(40960, s['ublk_bytes_total{dev="4",queue="1",direction="write"}'])
    assert.are.equal(60, s['ublk_server_uptime_seconds{dev="4"}'])
    assert.are.equal(2, s['ublk_device_recoveries_total{dev="4"}'])
    assert.are.equal(1, s['ublk_device_reloads_total{dev="4"}'])
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

-- The exporter's HTTP side on the host (no device needed: the text is the
-- one above's renderer; a guest spec, messages_spec, scrapes real devices).
describe("stats --prom --listen", function()
  local sh = require("shell").run
  -- starts an exporter: its pid, once it says it serves
  local function start(args, log)
    local _, pid = sh(("build/ublk-lua stats --prom %s > %s 2>&1 & echo $!"):format(args, log))
    pid = tonumber(pid)
    for _ = 1, 200 do
      local f = io.open(log)
      local said = f and f:read("*a") or ""
      if f then f:close() end
      if said:match("serving") then return pid, said end
      os.execute("sleep 0.05")
    end
    error("the exporter did not start: " .. (io.open(log) and io.open(log):read("*a") or ""))
  end
  local function gone(pid)
    for _ = 1, 100 do
      if os.execute(("kill -0 %d 2>/dev/null"):format(pid)) ~= 0 then return true end
      os.execute("sleep 0.05")
    end
    return false
  end
  local port = 20000 + math.random(0, 9999)
  local url = ("http://127.0.0.1:%d"):format(port)
  local log = os.tmpname()

  it("answers GET /metrics with the exposition type, other requests with their status", function()
    local pid, said = start("--listen 127.0.0.1:" .. port, log)
    assert.matches(("serving %s/metrics"):format(url), said, 1, true)
    local rc, head = sh(("curl -sS -D - -o /dev/null %s/metrics"):format(url))
    assert.are.equal(0, rc, head)
    assert.matches("^HTTP/1.1 200 OK\r\n", head)
    assert.matches("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", head, 1, true)
    for _, c in ipairs({ { "-X POST " .. url .. "/metrics", "405" }, { url .. "/nothing", "404" },
        { url .. "/", "200" } }) do
      local _, code = sh(("curl -s -o /dev/null -w '%%{http_code}' %s"):format(c[1]))
      assert.are.equal(c[2], code, c[1])
    end
    -- a request line that is no HTTP: 400; a client that trickles a byte
    -- every 0.5 s is dropped 2 s after it came, and the next one served
    rc, head = sh(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; printf \"hello\\r\\n\\r\\n\" >&3; head -1 <&3'")
      :format(port))
    assert.matches("HTTP/1.1 400 Bad Request", head)
    rc, head = sh(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; for i in 1 2 3 4 5 6 7 8; do "
      .. "printf G >&3 2>/dev/null; sleep 0.5; done' & sleep 0.2; "
      .. "curl -sS --fail --max-time 10 -o /dev/null -w '%%{http_code} %%{time_total}' %s/metrics; wait")
      :format(port, url))
    assert.are.equal(0, rc, head)
    local code, secs = head:match("^(%d+) ([%d.]+)$")
    assert.are.equal("200", code, head)
    -- served once the trickling one was dropped: after about 2 s, not its 4
    assert.truthy(tonumber(secs) > 1.5 and tonumber(secs) < 3.5, head)
    os.execute("kill -TERM " .. pid)
    assert.is_true(gone(pid), "the exporter did not end at SIGTERM")
    os.remove(log)
  end)

  it("serves on a unix socket, removes it at SIGTERM, takes over one a killed exporter left", function()
    local sock = os.tmpname()
    os.remove(sock)
    local pid = start("--listen " .. sock, log)
    local rc, out = sh(("curl -sS --fail --unix-socket %s http://localhost/metrics"):format(sock))
    assert.are.equal(0, rc, out)
    os.execute("kill -KILL " .. pid)
    assert.is_true(gone(pid))
    assert.are.equal(0, os.execute("test -S " .. sock), "a killed exporter leaves its socket file")
    pid = start("--listen " .. sock, log)
    rc, out = sh(("curl -sS --fail --unix-socket %s http://localhost/metrics"):format(sock))
    assert.are.equal(0, rc, out)
    os.execute("kill -TERM " .. pid)
    assert.is_true(gone(pid))
    assert.are_not.equal(0, os.execute("test -e " .. sock))
    os.remove(log)
  end)

  it("refuses an address it cannot listen on, naming it and the forms allowed", function()
    local rc, out = sh("build/ublk-lua stats --prom --listen localhost")
    assert.are.equal(1, rc, out)
    assert.matches("--listen 'localhost': give HOST:PORT (127.0.0.1:9850), [HOST]:PORT (IPv6) "
      .. "or a unix socket's path", out, 1, true)
    rc, out = sh("build/ublk-lua stats --prom --listen 127.0.0.1:70000")
    assert.are.equal(1, rc, out)
    -- a path that is some other file is not taken for a stale socket
    local file = os.tmpname()
    rc, out = sh("build/ublk-lua stats --prom --listen " .. file)
    assert.are.equal(1, rc, out)
    assert.matches("EADDRINUSE", out, 1, true)
    assert.truthy(io.open(file), "the file is still there")
    os.remove(file)
    rc, out = sh("build/ublk-lua stats --prom --listen /nonexistent/dir/m.sock")
    assert.are.equal(1, rc, out)
    assert.matches("--listen '/nonexistent/dir/m.sock': ENOENT", out, 1, true)
    rc, out = sh("build/ublk-lua stats --listen 127.0.0.1:9850")
    assert.are.equal(2, rc, out)
    assert.matches("--listen needs --prom", out, 1, true)
    rc, out = sh("build/ublk-lua stats --prom --listen 127.0.0.1:9850 --watch 5")
    assert.are.equal(2, rc, out)
  end)
end)
