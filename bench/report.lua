-- bench/report.lua: turns bench/guest.lua's JSON into a markdown report on
-- stdout and a PNG bar chart of ratios (drawn by gnuplot).
--   luajit bench/report.lua RESULTS.json [CHART.png]
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local json = require "dkjson"

local path, png = arg[1], arg[2]
local f = assert(io.open(path))
local R = assert(json.decode(f:read("*a")))
f:close()

local function cell(w, dev) return R.summary[w.id .. "|" .. dev] end
local function metric(w) return (w.bs == "4k") and "iops" or "mibs" end
local function value(w, dev)
  local c = cell(w, dev)
  return c and c[metric(w)]
end
local function fmt_value(w, v)
  if not v then return "-" end
  if metric(w) == "iops" then
    return v >= 1000 and ("%.1fk"):format(v / 1000) or ("%.0f"):format(v)
  end
  return ("%.0f MiB/s"):format(v)
end
local function ratio(a, b)
  if not a or not b or b == 0 then return nil end
  return a / b
end
local function fmt_ratio(r) return r and ("%.2fx"):format(r) or "-" end
local function has(dev) for _, d in ipairs(R.devices) do if d == dev then return true end end end

local out = {}
local function p(fmt, ...) out[#out + 1] = select("#", ...) > 0 and fmt:format(...) or fmt end

p("Measured %s on kernel %s in a %s; %d round%s of %d s per case, interleaved;",
  R.date:sub(1, 10), R.kernel, R.guest, R.rounds, R.rounds == 1 and "" or "s", R.runtime_s)
p("medians shown (min..max in the JSON). Software emulation: absolute numbers are not")
p("hardware numbers; compare the ratios, measured side by side in the same boot.")
p("")
local header = { "| workload |" }
local rule = { "|---|" }
for _, d in ipairs(R.devices) do
  header[#header + 1] = " " .. d .. " |"
  rule[#rule + 1] = "---|"
end
p("**Throughput** (4k: IOPS, 128k: MiB/s)")
p("")
p(table.concat(header))
p(table.concat(rule))
for _, w in ipairs(R.workloads) do
  local row = { "| " .. w.id .. " |" }
  for _, d in ipairs(R.devices) do row[#row + 1] = " " .. fmt_value(w, value(w, d)) .. " |" end
  p(table.concat(row))
end
p("")
p("**Ratios** to brd / to loop, same workload, same boot")
p("")
p(table.concat(header))
p(table.concat(rule))
for _, w in ipairs(R.workloads) do
  local row = { "| " .. w.id .. " |" }
  for _, d in ipairs(R.devices) do
    local v = value(w, d)
    row[#row + 1] = (" %s / %s |"):format(fmt_ratio(ratio(v, value(w, "brd"))),
      fmt_ratio(ratio(v, value(w, "loop"))))
  end
  p(table.concat(row))
end
p("")
-- make bench PEERS=1: each kublk row beside the row of ours that takes
-- the same path through the driver (bench/peers/kublk.lua); results
-- before PEERS have no `peers`
if R.peers and #R.peers > 0 then
  p("**Against kublk**, the kernel's reference ublk server, same boot: ours over kublk's")
  p("throughput (above 1x: ours is faster) / the server's CPU time per I/O (below 1x: ours")
  p("costs less). kublk pins each queue's thread to its CPUs; ours by default only while requests come one at a time (pin = \"auto\", since 2026-12-05; unpinned before).")
  p("")
  local ph, pr = { "| workload |" }, { "|---|" }
  for _, x in ipairs(R.peers) do
    ph[#ph + 1] = (" %s / %s |"):format(x.ours, x.peer)
    pr[#pr + 1] = "---|"
  end
  p(table.concat(ph))
  p(table.concat(pr))
  for _, w in ipairs(R.workloads) do
    local row = { "| " .. w.id .. " |" }
    for _, x in ipairs(R.peers) do
      local a, b = cell(w, x.ours) or {}, cell(w, x.peer) or {}
      row[#row + 1] = (" %s / %s |"):format(fmt_ratio(ratio(value(w, x.ours), value(w, x.peer))),
        fmt_ratio(ratio(a.cpu_ns_per_io, b.cpu_ns_per_io)))
    end
    p(table.concat(row))
  end
  p("")
end
-- make bench RBD=1: one Ceph image by ublk-lua's rbd backend, rbd-nbd and
-- krbd, with the OSD's CPU time per I/O (it shares the guest's vCPUs)
if has("ublk-rbd") then
  p("**Ceph RBD**, one image on a one-OSD memstore cluster in the same guest: ublk-rbd's")
  p("throughput over rbd-nbd's and over krbd's; CPU time per I/O (us) of the serving process")
  p("(ublk-lua's server, the rbd-nbd daemon; krbd has none, '-') and of the OSD")
  p("")
  p("| workload | ublk-rbd | rbd-nbd | krbd | / rbd-nbd (>= 1.3x) | / krbd (>= 0.9x) | server CPU/IO ublk / rbd-nbd | OSD CPU/IO ublk / rbd-nbd / krbd |")
  p("|---|---|---|---|---|---|---|---|")
  local function us1(ns) return ns and ("%.0f"):format(ns / 1000) or "-" end
  for _, w in ipairs(R.workloads) do
    local a, n, k = cell(w, "ublk-rbd") or {}, cell(w, "rbd-nbd") or {}, cell(w, "krbd") or {}
    p("| %s | %s | %s | %s | %s | %s | %s / %s | %s / %s / %s |", w.id, fmt_value(w, value(w, "ublk-rbd")),
      fmt_value(w, value(w, "rbd-nbd")), fmt_value(w, value(w, "krbd")),
      fmt_ratio(ratio(value(w, "ublk-rbd"), value(w, "rbd-nbd"))),
      fmt_ratio(ratio(value(w, "ublk-rbd"), value(w, "krbd"))),
      us1(a.cpu_ns_per_io), us1(n.cpu_ns_per_io),
      us1(a.osd_cpu_ns_per_io), us1(n.osd_cpu_ns_per_io), us1(k.osd_cpu_ns_per_io))
  end
  p("")
end
p("**Latency** p50 / p99 / p99.9 in us; CPU time per I/O (us): the server's, the part of")
p("it in user space, and the whole guest's (fio, kernel and server: what the I/O costs in all);")
p("the server's threads' context switches per I/O (each sleep is one, and one wakeup) and")
p("system calls per I/O (every thread of the server; \"-\" where the guest could not count them);")
p("interrupts between CPUs per I/O, the whole guest's (IPIs: a request or its completion waking")
p("a thread on the other CPU)")
p("")
p("| workload | device | p50 | p99 | p99.9 | CPU/IO | user CPU/IO | all CPU/IO | switches/IO | syscalls/IO | IPIs/IO |")
p("|---|---|---|---|---|---|---|---|---|---|---|")
local function us(ns) return ns and ("%.1f"):format(ns / 1000) or "-" end
for _, w in ipairs(R.workloads) do
  for _, d in ipairs(R.devices) do
    local c = cell(w, d)
    if c then
      p("| %s | %s | %.0f | %.0f | %.0f | %s | %s | %s | %s | %s | %s |", w.id, d, c.p50_us or 0,
        c.p99_us or 0, c.p999_us or 0, us(c.cpu_ns_per_io), us(c.user_cpu_ns_per_io),
        us(c.all_cpu_ns_per_io), c.switches_per_io and ("%.2f"):format(c.switches_per_io) or "-",
        c.syscalls_per_io and ("%.2f"):format(c.syscalls_per_io) or "-",
        c.ipis_per_io and ("%.2f"):format(c.ipis_per_io) or "-")
    end
  end
end
p("")
if R.scrape_cost then
  p("**What a scrape costs** (bench/scrape-cost.sh): %s", R.scrape_cost)
  p("")
end
p("**Device creation**: ADD_DEV to a completed 4 KiB read (median ms; in brackets the")
p("runtime's own ADD_DEV..START_DEV time)")
p("")
p("| depth | 1 queue | 2 queues |")
p("|---|---|---|")
for _, depth in ipairs({ 64, 128, 1024 }) do
  local function c(q)
    local x = R.creation and R.creation[("depth%d-q%d"):format(depth, q)]
    return x and ("%.1f (%.1f)"):format(x.median_ms, x.kernel_median_us / 1000) or "-"
  end
  p("| %d | %s | %s |", depth, c(1), c(2))
end

-- The targets from the issue, each with its measured ratio.
local function wl(id) for _, w in ipairs(R.workloads) do if w.id == id then return w end end end
local function target(name, a, b, id, goal)
  local w = wl(id)
  if not w or not has(a) or not has(b) then return end
  local r = ratio(value(w, a), value(w, b))
  p("| %s | %s | %s | %s |", name, fmt_ratio(r), goal, r and (r >= tonumber(goal:match("[%d.]+")) and "met" or "missed") or "-")
end
p("")
p("**Targets** (4k randread QD64 with 2 jobs unless the target names its workload)")
p("")
p("| target | measured | goal | |")
p("|---|---|---|---|")
local rr = wl("randread-4k-qd64-2j") and "randread-4k-qd64-2j" or "randread-4k-qd64-1j"
target("ublk memory vs loop", "ublk-memory", "loop", rr, ">= 1.3x")
target("ublk memory vs brd", "ublk-memory", "brd", rr, ">= 0.9x")
target("pure-Lua memory vs C memory", "ublk-lua-memory", "ublk-memory", rr, ">= 0.8x")
target("Lua policy over C memory vs C memory", "ublk-lua-policy", "ublk-memory", rr, ">= 0.9x")
target("ublk-lua Lua backend vs nbdkit Lua plugin", "ublk-lua-memory", "nbdkit-lua", rr, ">= 2x")
for _, t in ipairs({ { "ublk-nbd", "nbdkit-memory", "unix" }, { "ublk-nbd-tcp", "nbdkit-memory-tcp", "TCP" } }) do
  target("ublk-lua nbd backend vs kernel nbd client, " .. t[3] .. ", 4k", t[1], t[2], rr, ">= 1.2x")
  target("ublk-lua nbd backend vs kernel nbd client, " .. t[3] .. ", 128k read", t[1], t[2],
    "read-128k-qd16", ">= 1.2x")
end
-- fast paths (issue 9): QD1, 128 KiB, zero copy
target("ublk memory vs loop, 4k QD1", "ublk-memory", "loop", "randread-4k-qd1", ">= 1.0x")
target("ublk memory vs brd, 128k read", "ublk-memory", "brd", "read-128k-qd16", ">= 0.9x")
target("ublk file (default copy mode) vs loop, 128k read", "ublk-file", "loop",
  "read-128k-qd16", ">= 1.0x")
target("ublk file (default copy mode) vs loop, 128k write", "ublk-file", "loop",
  "write-128k-qd16", ">= 1.0x")
target("ublk file (default) vs copy = buffer, 4k", "ublk-file", "ublk-file-buffer", rr, ">= 1.0x")
target("pure-Lua memory vs C memory, 128k read", "ublk-lua-memory", "ublk-memory",
  "read-128k-qd16", ">= 0.8x")
target("pure-Lua memory vs C memory, 128k write", "ublk-lua-memory", "ublk-memory",
  "write-128k-qd16", ">= 0.8x")
local c128 = R.creation and R.creation["depth128-q2"]
if c128 then
  p("| device usable after ADD_DEV, depth 128, 2 queues | %.1f ms | <= 100 ms | %s |",
    c128.median_ms, c128.median_ms <= 100 and "met" or "missed")
end
print(table.concat(out, "\n"))

-- ---- chart: ratio to brd per workload, one bar per device ----
if png then
  local dat = png:gsub("%.png$", "") .. ".dat"
  local d = assert(io.open(dat, "w"))
  local others = {}
  for _, dev in ipairs(R.devices) do if dev ~= "brd" then others[#others + 1] = dev end end
  d:write("workload\t" .. table.concat(others, "\t") .. "\n")
  for _, w in ipairs(R.workloads) do
    local row = { w.id }
    for _, dev in ipairs(others) do row[#row + 1] = ("%.3f"):format(ratio(value(w, dev), value(w, "brd")) or 0) end
    d:write(table.concat(row, "\t") .. "\n")
  end
  d:close()
  local gp = assert(io.popen("gnuplot", "w"))
  gp:write(([[
set terminal pngcairo size 1400,700 font ",10" noenhanced
set output '%s'
set title "ublk-lua benchmark: throughput relative to brd (kernel %s, %s)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set ylabel "ratio to brd (higher is better)"
set yrange [0:*]
set grid ytics
set key outside right top
set xtics rotate by -25
plot for [i=2:%d] '%s' using i:xtic(1) title columnheader(i)
]]):format(png, R.kernel, R.date:sub(1, 10), #others + 1, dat))
  gp:close()
  os.remove(dat)
end
