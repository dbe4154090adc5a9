-- ublk.metrics: devices' statistics (lua/ublk/stats.lua snapshots) in the
-- Prometheus text exposition format (version 0.0.4): requests and bytes
-- per device, queue and op; failed requests, also by errno; requests in
-- flight; a Lua backend's own counters and gauges; the server's part of each
-- request as a histogram per device and kind.  `ublk-lua stats --prom`
-- prints it, or writes it to a file for node_exporter's textfile
-- collector; nothing is asked of the servers.
local stats = require "ublk.stats"
local json = require "ublk.json"

local metrics = {}

local format, concat = string.format, table.concat

-- Histogram bounds: powers of two from 1.024 us to 34.4 s.  Every one is a
-- bound of the runtime's own buckets (runtime/queue/stats.h: a power of
-- two starts a bucket), so each cumulative count is exact.
local LE = {}
for k = 10, 35 do LE[#LE + 1] = 2 ^ k end

local bucket_range = stats.bucket_range
-- le values as Prometheus writes floats (shortest exact text)
local num = json.number

local HELP = {
  ublk_requests_total = { "counter", "Requests completed without error, by device, queue and op." },
  ublk_request_errors_total = { "counter", "Requests that failed, by device and queue." },
  ublk_request_errno_total = { "counter", "Requests that failed, by device, queue and errno "
    .. "(only the errnos that happened)." },
  ublk_requests_inflight = { "gauge", "Requests the server holds: taken from the kernel, not "
    .. "yet committed." },
  ublk_bytes_total = { "counter", "Bytes read or written, by device, queue and direction." },
  ublk_request_duration_seconds = { "histogram", "The server's part of each request (from the "
    .. "loop pass that took it to the one that committed it), by device and kind; _sum is "
    .. "estimated from the buckets' middles (within 6.25%)." },
  ublk_server_uptime_seconds = { "gauge", "Seconds since the device's server made its statistics." },
  ublk_device_recoveries_total = { "counter", "Times a new server recovered the device (a crash, "
    .. "add --restart, recover) since it was added." },
  ublk_device_reloads_total = { "counter", "Times `ublk-lua reload` handed the device to a new "
    .. "server since it was added." },
}
local ORDER = { "ublk_requests_total", "ublk_request_errors_total", "ublk_request_errno_total",
  "ublk_requests_inflight", "ublk_bytes_total",
  "ublk_request_duration_seconds", "ublk_server_uptime_seconds", "ublk_device_recoveries_total",
  "ublk_device_reloads_total" }

-- render({ { id = N, snap = snapshot [, recoveries = n, reloads = n] }, ... }) -> exposition text
function metrics.render(devices)
  local by, own, HELP_OWN = {}, {}, {}
  for _, name in ipairs(ORDER) do by[name] = {} end
  local function add(name, line) local t = by[name]; t[#t + 1] = line end
  for _, d in ipairs(devices) do
    local dev, snap = d.id, d.snap
    local hist = { read = {}, write = {}, other = {} }
    for qi, q in ipairs(snap.queues) do
      local labels = format('dev="%d",queue="%d"', dev, qi - 1)
      local ops = {}
      for op in pairs(q.ops) do ops[#ops + 1] = op end
      table.sort(ops)
      for _, op in ipairs(ops) do
        add("ublk_requests_total", format('ublk_requests_total{%s,op="%s"} %s', labels, op,
          num(q.ops[op])))
      end
      add("ublk_request_errors_total", format("ublk_request_errors_total{%s} %s", labels,
        num(q.errors)))
      local names = {}
      for name in pairs(q.errnos or {}) do names[#names + 1] = name end
      table.sort(names)
      for _, name in ipairs(names) do
        add("ublk_request_errno_total", format('ublk_request_errno_total{%s,errno="%s"} %s', labels,
          name, num(q.errnos[name])))
      end
      if q.inflight then
        add("ublk_requests_inflight", format("ublk_requests_inflight{%s} %s", labels, num(q.inflight)))
      end
      -- a Lua backend's own: ublk_backend_NAME_total (counter), ublk_backend_NAME (gauge)
      for kind, t in pairs({ counter = q.counters or {}, gauge = q.gauges or {} }) do
        for name, v in pairs(t) do
          local metric = "ublk_backend_" .. name .. (kind == "counter" and "_total" or "")
          if not by[metric] then
            by[metric], own[#own + 1] = {}, metric
            HELP_OWN[metric] = { kind, ("The Lua backend's own %s '%s' (its counters), by device "
              .. "and queue."):format(kind, name) }
          end
          add(metric, format("%s{%s} %s", metric, labels, num(v)))
        end
      end
      add("ublk_bytes_total", format('ublk_bytes_total{%s,direction="read"} %s', labels,
        num(q.read_bytes)))
      add("ublk_bytes_total", format('ublk_bytes_total{%s,direction="write"} %s', labels,
        num(q.write_bytes)))
      for kind, h in pairs(q.lat) do
        for b, c in pairs(h) do hist[kind][b] = (hist[kind][b] or 0) + c end
      end
    end
    for _, kind in ipairs({ "read", "write", "other" }) do
      local h, count, sum = hist[kind], 0, 0
      local under = {} -- observations below each bound
      for i = 1, #LE do under[i] = 0 end
      for b, c in pairs(h) do
        local lo, hi = bucket_range(b)
        count, sum = count + c, sum + c * (lo + hi - 1) / 2
        for i, le in ipairs(LE) do if hi <= le then under[i] = under[i] + c end end
      end
      local labels = format('dev="%d",kind="%s"', dev, kind)
      for i, le in ipairs(LE) do
        add("ublk_request_duration_seconds", format('ublk_request_duration_seconds_bucket{%s,le="%s"} %s',
          labels, num(le / 1e9), num(under[i])))
      end
      add("ublk_request_duration_seconds", format('ublk_request_duration_seconds_bucket{%s,le="+Inf"} %s',
        labels, num(count)))
      add("ublk_request_duration_seconds", format("ublk_request_duration_seconds_sum{%s} %s", labels,
        num(sum / 1e9)))
      add("ublk_request_duration_seconds", format("ublk_request_duration_seconds_count{%s} %s",
        labels, num(count)))
    end
    if snap.started and snap.started > 0 then
      add("ublk_server_uptime_seconds", format('ublk_server_uptime_seconds{dev="%d"} %s', dev,
        num(math.floor((snap.t - snap.started) * 1000 + 0.5) / 1000)))
    end
    if d.recoveries then
      add("ublk_device_recoveries_total", format('ublk_device_recoveries_total{dev="%d"} %s', dev,
        num(d.recoveries)))
    end
    if d.reloads then
      add("ublk_device_reloads_total", format('ublk_device_reloads_total{dev="%d"} %s', dev,
        num(d.reloads)))
    end
  end
  local out = {}
  table.sort(own)
  local order = { unpack(ORDER) }
  for _, name in ipairs(own) do order[#order + 1] = name end
  for _, name in ipairs(order) do
    if #by[name] > 0 then
      local help = HELP[name] or HELP_OWN[name]
      out[#out + 1] = format("# HELP %s %s", name, help[2])
      out[#out + 1] = format("# TYPE %s %s", name, help[1])
      for _, l in ipairs(by[name]) do out[#out + 1] = l end
    end
  end
  return concat(out, "\n") .. "\n"
end

return metrics
