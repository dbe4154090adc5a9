-- ublk.cli_stats: `ublk-lua stats -n ID [--json] [--watch SECONDS]`: a
-- device's rates and latency percentiles over the last interval, beside
-- its totals since its server started (an error a minute ago still
-- shows), in units a person reads (38.9 MiB/s, 1.25 ms); read from the
-- server's shared counters (lua/ublk/stats.lua) without asking it
-- anything.
local core = require "ublk.core"
local json = require "ublk.json"
local stats = require "ublk.stats"

local cli_stats = {}

local KINDS = { "read", "write", "other" }

local cli_out = require "ublk.cli_out"
local out, complain = cli_out.out, cli_out.complain

-- Three significant digits: 9.87, 98.7, 987.
local function sig3(x)
  if x < 9.995 then return ("%.2f"):format(x) end
  if x < 99.95 then return ("%.1f"):format(x) end
  return ("%.0f"):format(x)
end

-- 38.9 MiB, 512 B, 1.50 GiB: powers of 1024, as sizes are written here
local UNITS = { "KiB", "MiB", "GiB", "TiB", "PiB" }
function cli_stats.bytes(n)
  if n < 1024 then return ("%.0f B"):format(n) end
  local u = 0
  while n >= 1023.5 and u < #UNITS do n, u = n / 1024, u + 1 end
  return sig3(n) .. " " .. UNITS[u]
end

-- 850 us, 1.25 ms, 3.00 s
function cli_stats.time(us)
  if us < 999.5 then return sig3(us) .. " us" end
  if us < 999500 then return sig3(us / 1000) .. " ms" end
  return sig3(us / 1e6) .. " s"
end

-- 72 s, 5 min 12 s, 3 h 4 min, 2 d 5 h
function cli_stats.duration(s)
  s = math.floor(s + 0.5)
  if s < 60 then return ("%d s"):format(s) end
  if s < 3600 then return ("%d min %d s"):format(s / 60, s % 60) end
  if s < 86400 then return ("%d h %d min"):format(s / 3600, s % 3600 / 60) end
  return ("%d d %d h"):format(s / 86400, s % 86400 / 3600)
end

-- One block: a row per op kind, then the errors.
local function block(lines, title, s)
  lines[#lines + 1] = title
  for _, kind in ipairs(KINDS) do
    local k = s[kind]
    local row = ("  %-8s %10d %10s %9s"):format(kind, k.count,
      kind == "other" and "" or cli_stats.bytes(k.bytes), k.iops and ("%.0f"):format(k.iops) or "-")
    row = row .. ("  %12s"):format(kind == "other" and "" or
      k.bytes_per_s and cli_stats.bytes(k.bytes_per_s) .. "/s" or "-")
    if k.count > 0 then
      row = row .. ("  %9s %9s %9s"):format(cli_stats.time(k.p50_us), cli_stats.time(k.p99_us),
        cli_stats.time(k.p999_us))
    end
    lines[#lines + 1] = (row:gsub("%s+$", ""))
  end
  local by = {}
  for name, c in pairs(s.errnos or {}) do by[#by + 1] = ("%s %d"):format(name, c) end
  table.sort(by)
  lines[#lines + 1] = ("  %-8s %10d"):format("errors", s.errors)
    .. (#by > 0 and "  (" .. table.concat(by, ", ") .. ")" or "")
  -- a Lua backend's own: counters over the block's time, gauges now
  local own = {}
  for name, v in pairs(s.counters or {}) do own[#own + 1] = ("%s %s"):format(name, json.number(v)) end
  for name, v in pairs(s.gauges or {}) do own[#own + 1] = ("%s %s"):format(name, json.number(v)) end
  table.sort(own)
  if #own > 0 then lines[#lines + 1] = "  backend  " .. table.concat(own, ", ") end
end

-- The text: the last interval, then the totals since the server started,
-- in the same columns.
function cli_stats.text(id, last, total)
  local lines = { ("dev id %d: %d queue%s%s, %d request%s in flight"):format(id, last.queues,
    last.queues == 1 and "" or "s",
    (last.threads or 1) > 1 and (" x %d threads"):format(last.threads) or "",
    last.inflight or 0, last.inflight == 1 and "" or "s"),
    ("  %-8s %10s %10s %9s  %12s  %9s %9s %9s"):format("", "requests", "bytes", "IOPS",
      "bandwidth", "p50", "p99", "p99.9") }
  block(lines, ("last %.2f s"):format(last.seconds), last)
  block(lines, "since start" .. (total.seconds and ", " .. cli_stats.duration(total.seconds) or ""),
    total)
  return table.concat(lines, "\n")
end

-- The snapshots of device id, or of every device with a statistics
-- mapping, found again at each call: a device added since shows, and one
-- removed and made again is read from its new mapping.
local function snapshots(id)
  local devs = {}
  for _, i in ipairs(id and { id } or require("ublk.state").ids()) do
    local r, err = stats.open(i)
    if r then
      -- the record's takeovers: counted there, as the statistics start anew
      -- with each server
      local rec = require("ublk.state").read(i) or {}
      devs[#devs + 1] = { id = i, snap = r:snapshot(), recoveries = tonumber(rec.recoveries) or 0,
        reloads = tonumber(rec.reloads) or 0 }
    elseif id then
      return nil, ("device %d: no statistics (is ublk-lua serving it?): %s"):format(i, err)
    end
  end
  return devs
end

-- `stats --prom`: the exposition text of device o.id, or of every device;
-- to stdout, atomically to o.textfile, or on GET /metrics at o.listen.
local function prom(o)
  local metrics = require "ublk.metrics"
  local devs, err = snapshots(o.id)
  if not devs then complain(err) return 1 end
  if o.listen then
    -- a device of -n that has gone is left out, as a removed one is
    return require("ublk.metrics_http").run(o.listen,
      function() return metrics.render(snapshots(o.id) or {}) end, complain,
      function(text) out("%s", text) io.stdout:flush() end)
  end
  while true do
    local text = metrics.render(devs)
    if o.textfile then
      local ok, werr = require("ublk.state").write_file(o.textfile, text)
      if not ok then complain(("--textfile: %s"):format(werr)) return 1 end
    else
      io.stdout:write(text)
      io.stdout:flush()
    end
    if not o.watch or core.wait_signal(math.floor(o.watch * 1000 + 0.5)) then return 0 end
    devs = snapshots(o.id) or {}
  end
end

function cli_stats.run(o)
  if o.prom then return prom(o) end
  local reader, err = stats.open(o.id)
  if not reader then
    complain(("device %d: no statistics (is ublk-lua serving it?): %s"):format(o.id, err))
    return 1
  end
  local interval = o.watch or 1
  local before = reader:snapshot()
  repeat
    if core.wait_signal(math.floor(interval * 1000 + 0.5)) then return 0 end
    local now = reader:snapshot()
    local last, total = stats.summary(now, before), stats.summary(now)
    if o.json then
      last.id, last.total = o.id, total
      out("%s", json.encode(last))
    else
      out("%s", cli_stats.text(o.id, last, total))
    end
    io.stdout:flush()
    before = now
  until not o.watch
  return 0
end

return cli_stats
