-- bench/guest.lua: every benchmark, inside one guest boot, so the numbers
-- compare.  Runs as root on a ublk kernel (bench/run boots one).
--   luajit bench/guest.lua OUT.json [quick]
-- Devices are set up once; each round runs every workload on every device
-- (A B C A B C ...), so drift in the emulated machine spreads evenly.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local json = require "dkjson"
local ublk = require "ublk"

local out_path, quick = arg[1], arg[2] == "quick"
local ROUNDS = tonumber(os.getenv("UBLK_BENCH_ROUNDS")) or quick and 1 or 3
-- 2 s after a 1 s ramp: the spread between rounds (min..max in the JSON)
-- stays within a few percent, and both kernels' runs fit in 40 minutes
local RUNTIME = 2
local SPAN = "128M" -- every device's working set, written once before reading

local function sh(cmd, ...)
  if select("#", ...) > 0 then cmd = cmd:format(...) end
  local p = io.popen(cmd .. " 2>&1; echo __rc=$?")
  local s = p:read("*a")
  p:close()
  local body, rc = s:match("^(.-)__rc=(%d+)%s*$")
  return tonumber(rc) == 0, body
end
local function must(cmd, ...)
  local ok, out = sh(cmd, ...)
  if not ok then error(("failed: %s\n%s"):format(cmd:format(...), out), 2) end
  return out
end
local function log(fmt, ...) io.stderr:write(fmt:format(...), "\n") end
local function wait_for(cond, what)
  for _ = 1, 600 do
    if cond() then return end
    sh("sleep 0.05")
  end
  error("timed out waiting for " .. what)
end
local function exists(path) return sh("test -b %s", path) end

-- ---- devices ----

local devices = {} -- { name, path, pid?, kind }
-- the kublk rows made, each with the row of ours it is compared with
local peers = {} -- { peer, ours }
local kublk = dofile("bench/peers/kublk.lua")

-- UBLK_BENCH_ONLY (below): devices outside it are not even set up
local WANT = os.getenv("UBLK_BENCH_ONLY")
local function wanted(name)
  return not WANT or ("," .. WANT .. ","):find("," .. name .. ",", 1, true) ~= nil
end

local function add(name, path, pid, kind)
  devices[#devices + 1] = { name = name, path = path, pid = pid, kind = kind }
end

-- its output in LOG, by default one file per spawning shell
local function spawn(cmd, log)
  return tonumber(must("sh -c '%s > %s 2>&1 & echo $!'", cmd, log or "/tmp/bench-spawn.$$"):match("%d+"))
end

-- not exited (a zombie has)
local function running(pid)
  local ok, stat = sh("cat /proc/%d/stat", pid)
  return ok and not stat:match("^%d+ %b() Z")
end

-- A server process that makes one ublk device, the ublkbN that appears.
-- Returns false and its output if it exits first.
local function ublk_server(name, cmd, kind)
  local before = must("ls /sys/block")
  local log = "/tmp/bench-" .. name .. ".log"
  local pid = spawn(cmd, log)
  local path, gone
  wait_for(function()
    for dev in must("ls /sys/block"):gmatch("ublkb%d+") do
      if not before:find(dev .. "\n", 1, true) then path = "/dev/" .. dev end
    end
    gone = not path and not running(pid)
    return gone or path and exists(path)
  end, name)
  if gone then return false, select(2, sh("cat %s", log)) end
  add(name, path, pid, kind)
  return true
end

local function ublk_dev(name, script)
  if wanted(name) then ublk_server(name, "build/ublk-lua " .. script, "ublk") end
end

-- UBLK_BENCH_RBD=1 (make bench RBD=1): a Ceph cluster in the guest
-- (spec/harness/ceph/cluster: one monitor, one OSD on memstore, on loopback) and
-- one image served three ways, one after another: by ublk-lua's rbd
-- backend, by rbd-nbd (librbd behind the kernel nbd client) and by the
-- kernel's own client, krbd.  Each row also measures the OSD's CPU per I/O:
-- it runs on the same two vCPUs, and costs as much as a client's share.
local ceph -- { conf = PATH, osd = PID } while the cluster runs
local function setup_rbd(mods)
  sh("ip link set lo up")
  local out = must("UBLK_CEPH_BYTES=1073741824 spec/harness/ceph/cluster start")
  ceph = { conf = assert(out:match("([^\n]+ceph%.conf)%s*$"), out) }
  log("bench: %s", out:match("started in [^\n]*") or out)
  ceph.osd = tonumber(must("cat %s/run/osd.0.pid", ceph.conf:match("^(.*)/ceph%.conf$")):match("%d+"))
  local img = "rbd/bench"
  must("rbd -c %s create --size 256M --image-feature layering %s", ceph.conf, img)
  local function row(name, path, pid, kind)
    add(name, path, pid, kind)
    devices[#devices].osd = ceph.osd
  end
  local function ours(name, extra)
    local cmd = ("build/ublk-lua bench/device.lua rbd %s conf=%s%s"):format(img, ceph.conf, extra)
    local started, why = ublk_server(name, cmd, "ublk")
    if not started then error(("bench: %s exited: %s\n%s"):format(name, cmd, why)) end
    devices[#devices].osd = ceph.osd
  end
  if wanted("ublk-rbd") then ours("ublk-rbd", "") end
  -- one queue, so one image handle rather than one a queue (what each
  -- handle's librbd threads cost): kept out of the RBD run like the
  -- other cost rows
  if os.getenv("UBLK_BENCH_COSTS") and wanted("ublk-rbd-1q") then ours("ublk-rbd-1q", " queues=1") end
  if wanted("rbd-nbd") then
    if not sh("test -e /sys/module/nbd") then must("insmod %s/nbd.ko nbds_max=4", mods) end
    -- it forks a daemon, which must not hold our pipe open: output to a file
    must("timeout 120 rbd-nbd -c %s map %s > /tmp/rbd-nbd.out 2>&1", ceph.conf, img)
    local path = must("cat /tmp/rbd-nbd.out"):match("/dev/nbd%d+")
    assert(path, "rbd-nbd map printed no device")
    -- the daemon: the kernel names the task that serves the socket (a
    -- thread of it; its Tgid is the process)
    local task = must("cat /sys/block/%s/pid", path:match("nbd%d+")):match("%d+")
    local pid = tonumber(must("cat /proc/%s/status", task):match("Tgid:%s*(%d+)"))
    row("rbd-nbd", path, pid, "rbd-nbd")
  end
  if wanted("krbd") then
    -- noudev: the guest runs no udev, for whose event map would wait
    -- forever; ms_mode=crc: the cluster listens on msgr2 only, and krbd's
    -- default (legacy) speaks msgr1 only
    local path = must("timeout 120 rbd -c %s device map -o noudev,ms_mode=crc %s", ceph.conf, img)
      :match("/dev/rbd%d+")
    row("krbd", assert(path, "rbd device map printed no device"), nil, "krbd")
  end
end

local function setup()
  local mods = "/run/ublk-vm/modules"
  must("insmod %s/brd.ko rd_nr=1 rd_size=262144", mods)
  add("brd", "/dev/ram0", nil, "kernel")
  must("insmod %s/null_blk.ko nr_devices=1 queue_mode=2 submit_queues=2 gb=1 irqmode=0", mods)
  add("null_blk", "/dev/nullb0", nil, "kernel")
  must("truncate -s 256M /tmp/loop.img")
  add("loop", must("losetup -f --show /tmp/loop.img"):match("%S+"), nil, "kernel")

  -- UBLK_BENCH_ALL=1 adds rows whose question is answered (README,
  -- docs/tuning.md): the nbd pair over TCP
  local all = os.getenv("UBLK_BENCH_ALL")
  ublk_dev("ublk-memory", "bench/device.lua memory")
  -- the other choices of `pin` (docs/tuning.md: which one wins when)
  ublk_dev("ublk-memory-pinned", "bench/device.lua memory - pinned")
  ublk_dev("ublk-memory-unpinned", "bench/device.lua memory - unpinned")
  -- spinning 300 us before sleeping (poll_us; docs/tuning.md)
  ublk_dev("ublk-memory-poll", "bench/device.lua memory - poll=300")
  -- what latency histograms and recovery's /dev/shm store cost: measured
  -- (bench/results/2026-11-25-*-stats-cost*), rows kept out of the full run
  if os.getenv("UBLK_BENCH_COSTS") then
    ublk_dev("ublk-memory-nolatency", "bench/device.lua memory - nolatency")
    ublk_dev("ublk-memory-norecovery", "bench/device.lua memory - norecovery")
  end
  -- the memory backend's copy modes (docs/tuning.md): user copy on the
  -- queue thread or by an SQE (through an io_uring worker), no user copy
  -- (memcpy to the tag's buffer), and zero copy for every size (7.x)
  local features = ublk.features() or {}
  -- (inline is the default's mode where the kernel lacks auto_reg)
  for _, m in ipairs{ "ring", "buffer", features.auto_buf_reg and "inline",
      features.auto_buf_reg and "auto_reg" } do
    ublk_dev("ublk-memory-" .. m, "bench/device.lua memory - copy=" .. m)
  end
  ublk_dev("ublk-null", "bench/device.lua null")
  -- null pinned and unpinned, beside kublk-null (which pins): only when
  -- asked for by name (UBLK_BENCH_ONLY); the full run has the memory pair
  if WANT then ublk_dev("ublk-null-pinned", "bench/device.lua null - pinned") end
  if WANT then ublk_dev("ublk-null-unpinned", "bench/device.lua null - unpinned") end
  -- batch I/O (7.x; docs/tuning.md): one commit command per pass, not per
  -- request
  if features.batch_io then
    ublk_dev("ublk-memory-batch", "bench/device.lua memory - batch")
    ublk_dev("ublk-null-batch", "bench/device.lua null - batch")
  end
  -- the file backend on tmpfs in its default mode (zero copy by auto
  -- buffer registration where the kernel has it), and in each other mode
  must("truncate -s 256M /tmp/ublk-file.img")
  ublk_dev("ublk-file", "bench/device.lua file /tmp/ublk-file.img")
  if features.batch_io then
    must("truncate -s 256M /tmp/ublk-file-batch.img")
    ublk_dev("ublk-file-batch", "bench/device.lua file /tmp/ublk-file-batch.img batch")
  end
  local modes = { buffer = features.auto_buf_reg or features.zero_copy,
    register = features.auto_buf_reg and features.zero_copy }
  for _, m in ipairs{ "buffer", "register" } do
    if modes[m] then
      must("truncate -s 256M /tmp/ublk-file-%s.img", m)
      ublk_dev("ublk-file-" .. m, ("bench/device.lua file /tmp/ublk-file-%s.img copy=%s")
        :format(m, m))
    end
  end
  ublk_dev("ublk-lua-memory", "examples/luamem.lua 256MiB")
  ublk_dev("ublk-lua-policy", "bench/policy.lua 256MiB")
  -- the same policy with copy = "buffer": no user copy after the delegate
  -- filled the tag's buffer (docs/tuning.md, Lua backends)
  if os.getenv("UBLK_BENCH_COSTS") then
    ublk_dev("ublk-lua-policy-buffer", "bench/policy.lua 256MiB buffer")
  end

  local nbd_rows = false
  for _, n in ipairs{ "nbdkit-memory", "nbdkit-lua", "nbdkit-memory-tcp", "ublk-nbd", "ublk-nbd-tcp" } do
    nbd_rows = nbd_rows or wanted(n)
  end
  local have_nbd = nbd_rows and sh("command -v nbdkit && test -e %s/nbd.ko", mods)
  if nbd_rows and not have_nbd then
    log("nbdkit or the nbd module is missing: no nbdkit rows")
  end
  if have_nbd then
    must("insmod %s/nbd.ko nbds_max=4", mods)
    local function nbd(name, n, plugin)
      local sock = "/tmp/nbd-" .. name .. ".sock"
      local pid = spawn(("nbdkit --foreground --unix %s %s"):format(sock, plugin))
      wait_for(function() return sh("test -S %s", sock) end, name .. " socket")
      must("nbd-client -unix %s /dev/nbd%d -b 4096 -nonetlink", sock, n)
      wait_for(function() return sh("test $(cat /sys/block/nbd%d/size) -gt 0", n) end, name)
      add(name, "/dev/nbd" .. n, pid, "nbd")
    end
    nbd("nbdkit-memory", 0, "memory 256M")
    nbd("nbdkit-lua", 1, "lua bench/nbdkit-ram.lua")
    ublk_dev("ublk-nbd", "bench/device.lua nbd nbd+unix:///?socket=/tmp/nbd-nbdkit-memory.sock")
  end
  if have_nbd and all then
    -- the same kind of server over loopback TCP, for the kernel client
    -- and for ublk-lua's nbd backend; each pair shares one server
    sh("ip link set lo up")
    local pid = spawn("nbdkit --foreground -i 127.0.0.1 -p 10809 memory 256M")
    wait_for(function() return sh("nbdinfo --size nbd://127.0.0.1:10809/") end, "nbdkit tcp")
    must("nbd-client 127.0.0.1 10809 /dev/nbd2 -b 4096 -nonetlink")
    wait_for(function() return sh("test $(cat /sys/block/nbd2/size) -gt 0") end, "nbd2")
    add("nbdkit-memory-tcp", "/dev/nbd2", pid, "nbd")
    ublk_dev("ublk-nbd-tcp", "bench/device.lua nbd nbd://127.0.0.1:10809/")
  end
  if os.getenv("UBLK_BENCH_RBD") == "1" then setup_rbd(mods) end
  -- UBLK_BENCH_PEERS=1 (make bench PEERS=1): the kernel's reference
  -- server beside ours; a row it cannot start is left out, said why
  if os.getenv("UBLK_BENCH_PEERS") == "1" then
    if not sh("test -x %s", kublk.BIN) then
      log("bench: UBLK_BENCH_PEERS=1 but no %s (bench/peers/build-kublk makes it): no kublk rows", kublk.BIN)
    else
      for _, row in ipairs(kublk.rows(features, modes.buffer)) do
        if wanted(row.name) then
          if row.file then must("truncate -s 256M %s", row.file) end
          local started, out = ublk_server(row.name, kublk.command(row), "kublk")
          if started then
            peers[#peers + 1] = { peer = row.name, ours = row.ours }
          else
            log("bench: %s exited: %s\n%s", row.name, kublk.command(row), out)
          end
        end
      end
    end
  end
  for _, d in ipairs(devices) do
    must("fio --name=fill --filename=%s --rw=write --bs=1M --iodepth=8 --ioengine=io_uring "
      .. "--direct=1 --size=%s", d.path, SPAN)
  end
end

-- Last made, first gone: a ublk nbd device must let go of its nbdkit
-- before that nbdkit is stopped (it waits for its clients to leave).
local function teardown()
  for i = #devices, 1, -1 do
    local d = devices[i]
    if d.kind == "nbd" then sh("nbd-client -d %s", d.path) end
    if d.kind == "rbd-nbd" then sh("rbd-nbd unmap %s", d.path) end
    if d.kind == "krbd" then sh("rbd device unmap -o noudev %s", d.path) end
    -- kublk stops and removes its device, then its server exits
    if d.kind == "kublk" then sh(kublk.del(d.path)) end
    if d.pid then sh("kill -TERM %d; while kill -0 %d 2>/dev/null; do sleep 0.05; done", d.pid, d.pid) end
  end
  sh("losetup -D")
  -- after every client of it has gone
  if ceph then sh("spec/harness/ceph/cluster stop %s", ceph.conf) end
end

-- ---- measurement ----

local WORKLOADS = {
  { id = "randread-4k-qd64-1j", rw = "randread", bs = "4k", qd = 64, jobs = 1 },
  { id = "randread-4k-qd64-2j", rw = "randread", bs = "4k", qd = 64, jobs = 2 },
  { id = "randwrite-4k-qd64-1j", rw = "randwrite", bs = "4k", qd = 64, jobs = 1 },
  { id = "randwrite-4k-qd64-2j", rw = "randwrite", bs = "4k", qd = 64, jobs = 2 },
  { id = "read-128k-qd16", rw = "read", bs = "128k", qd = 16, jobs = 1 },
  { id = "write-128k-qd16", rw = "write", bs = "128k", qd = 16, jobs = 1 },
  { id = "randread-4k-qd1", rw = "randread", bs = "4k", qd = 1, jobs = 1 },
}
if quick then WORKLOADS = { WORKLOADS[2], WORKLOADS[4], WORKLOADS[7] } end

-- UBLK_BENCH_ONLY=brd,ublk-memory, UBLK_BENCH_WORKLOADS=randread-4k-qd64-1j
-- and UBLK_BENCH_ROUNDS=1 narrow a run while investigating; the published
-- results use none of them.
local function only(list, env, key)
  local want = os.getenv(env)
  if not want then return list end
  local set, out = {}, {}
  for name in want:gmatch("[^,]+") do set[name] = true end
  for _, x in ipairs(list) do if set[x[key]] then out[#out + 1] = x end end
  return out
end
WORKLOADS = only(WORKLOADS, "UBLK_BENCH_WORKLOADS", "id")

-- The sum over every thread of a process of one number read from each
-- thread's /proc file `name` by `pick` (a pattern with one capture).
local function per_thread_sum(pid, name, pick)
  if not pid then return nil end
  local total = 0
  for line in must("cat /proc/%d/task/*/%s", pid, name):gmatch("[^\n]+") do
    total = total + tonumber(line:match(pick))
  end
  return total
end

local function numbers(s)
  local n = {}
  for x in s:gmatch("%d+") do n[#n + 1] = tonumber(x) end
  return n
end

local TICK_NS = 1e9 / tonumber(must("getconf CLK_TCK"):match("%d+"))
-- CPU time of every thread of a process, in ns (schedstat: time on CPU).
local function cpu_ns(pid) return per_thread_sum(pid, "schedstat", "^(%d+)") end
-- Its user-space part (stat's utime, the 12th field after the name, which
-- may hold spaces): what our loop and the backend cost, against the kernel
-- work the server's threads do (the rest of cpu_ns).
local function user_ns(pid)
  local ticks = per_thread_sum(pid, "stat", ".*%) " .. ("%S+ "):rep(11) .. "(%d+)")
  return ticks and ticks * TICK_NS
end

-- Context switches of every thread of a process (/proc status: voluntary,
-- which is the thread going to sleep, so one wakeup each, plus involuntary
-- ones): per I/O beside CPU per I/O, the count that shows a server sleeping
-- and waking once a request, or a tick that wakes it for nothing.
local function switches(pid)
  if not pid then return nil end
  local total = 0
  for n in must("cat /proc/%d/task/*/status", pid):gmatch("ctxt_switches:%s*(%d+)") do
    total = total + tonumber(n)
  end
  return total
end

-- System calls per thread, counted in the kernel by an ftrace histogram on
-- raw_syscalls:sys_enter keyed by thread id.  Set up once, before any
-- server starts, and never changed while I/O runs: attaching perf to a
-- tracepoint mid-run patches kernel text, and under TCG that oopsed the
-- 7.3 guest twice (int3 in __schedule and trace_syscall_enter, 2026-12-05).
-- Every process's system calls then take the traced path, every row alike.
-- UBLK_BENCH_SYSCALLS=0, or no tracefs: no counts ("-" in the report).
local TRACE = "/sys/kernel/tracing/events/raw_syscalls/sys_enter/"
local HIST = "hist:keys=common_pid:size=8192"
local counting = false
local function syscalls_start()
  if os.getenv("UBLK_BENCH_SYSCALLS") == "0" then return end
  sh("mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing")
  counting = sh("echo '%s' > %strigger", HIST, TRACE)
  if not counting then log("bench: no syscall counts (tracefs hist trigger unavailable)") end
end
local function syscalls_stop()
  if counting then sh("echo '!%s' > %strigger", HIST, TRACE) end
  counting = false
end
local function syscalls(pid)
  if not counting or not pid then return nil end
  local ok, tids = sh("ls /proc/%d/task", pid)
  local f = ok and io.open(TRACE .. "hist")
  if not f then return nil end
  local want, total = {}, 0
  for t in tids:gmatch("%d+") do want[tonumber(t)] = true end
  for id, n in f:read("*a"):gmatch("common_pid:%s*(%d+)%s*}%s*hitcount:%s*(%d+)") do
    if want[tonumber(id)] then total = total + tonumber(n) end
  end
  f:close()
  return total
end

-- fio's I/Os as the block device counted them: reads and writes completed
-- plus those merged into another request (/sys/block/*/stat fields 1, 2, 5,
-- 6). The server's CPU time and this count are read over the same window,
-- fio's ramp included on both sides: fio's own total_ios leaves the ramp
-- out, which overstated CPU per I/O by about (runtime + ramp) / runtime,
-- 1.5x, in every result before 2026-12-02's full runs. brd keeps no such
-- count (a bio driver without I/O accounting): its rows have no CPU figure.
local function done_ios(path)
  local f = assert(io.open("/sys/block/" .. path:match("[^/]+$") .. "/stat"))
  local n = numbers(f:read("*a"))
  f:close()
  return n[1] + n[2] + n[5] + n[6]
end

-- Busy time of the whole guest, every CPU, in ns (/proc/stat's first line,
-- all but idle and iowait): fio, the kernel and the server together, the
-- one CPU figure that also exists for the kernel's own devices.
local function busy_ns()
  local f = assert(io.open("/proc/stat"))
  local t = numbers(f:read("*l"))
  f:close()
  local sum = 0
  for _, x in ipairs(t) do sum = sum + x end
  return (sum - t[4] - t[5]) * TICK_NS
end

-- Interrupts between CPUs, all CPUs together (/proc/interrupts: CAL,
-- function calls, which carry a wakeup onto another CPU's run queue, and
-- RES, rescheduling): per I/O, how often a request crossed CPUs.  At 4k
-- QD1 with fio left free (6.12, 2026-12-06) ours crossed 0.62-0.73 times
-- an I/O and kublk 0.30-0.34, each a wakeup of fio on the other CPU, and
-- ours made 0.80-0.83x kublk's IOPS; with fio on one CPU both crossed
-- 0.06 times and ours made 0.94-1.00x.
local function ipis()
  local f = io.open("/proc/interrupts")
  if not f then return nil end
  local total = 0
  for line in f:lines() do
    local name, counts = line:match("^%s*(%u%u%u):([%d%s]*)")
    if name == "CAL" or name == "RES" then
      for n in counts:gmatch("%d+") do total = total + tonumber(n) end
    end
  end
  f:close()
  return total
end

local function run_fio(d, w)
  local file = "/tmp/fio-bench.json"
  -- the per-thread reads (a `cat` each) outside the guest-wide window
  local c0, u0, s0, y0 = cpu_ns(d.pid), user_ns(d.pid), switches(d.pid), syscalls(d.pid)
  local o0 = cpu_ns(d.osd)
  local n0, b0, i0 = done_ios(d.path), busy_ns(), ipis()
  must("fio --output-format=json --output=%s --name=b --filename=%s --ioengine=io_uring "
    .. "--direct=1 --rw=%s --bs=%s --iodepth=%d --numjobs=%d --cpus_allowed=0,1 "
    .. "--cpus_allowed_policy=split --size=%s --time_based --runtime=%d --ramp_time=1 "
    .. "--group_reporting --percentile_list=50:99:99.9",
    file, d.path, w.rw, w.bs, w.qd, w.jobs, SPAN, RUNTIME)
  local i1, b1, n1 = ipis(), busy_ns(), done_ios(d.path)
  local c1, u1, s1, y1 = cpu_ns(d.pid), user_ns(d.pid), switches(d.pid), syscalls(d.pid)
  local o1 = cpu_ns(d.osd)
  local f = assert(io.open(file))
  local report = assert(json.decode(f:read("*a"):match("{.*}")))
  f:close()
  local job = report.jobs[1]
  local side = w.rw:find("read") and job.read or job.write
  local pct = side.clat_ns.percentile or {}
  return {
    iops = side.iops, mibs = side.bw / 1024,
    p50_us = (pct["50.000000"] or 0) / 1000, p99_us = (pct["99.000000"] or 0) / 1000,
    p999_us = (pct["99.900000"] or 0) / 1000,
    cpu_ns_per_io = c0 and n1 > n0 and (c1 - c0) / (n1 - n0) or nil,
    user_cpu_ns_per_io = u0 and n1 > n0 and (u1 - u0) / (n1 - n0) or nil,
    all_cpu_ns_per_io = n1 > n0 and (b1 - b0) / (n1 - n0) or nil,
    switches_per_io = s0 and n1 > n0 and (s1 - s0) / (n1 - n0) or nil,
    osd_cpu_ns_per_io = o0 and n1 > n0 and (o1 - o0) / (n1 - n0) or nil,
    syscalls_per_io = y0 and y1 and n1 > n0 and (y1 - y0) / (n1 - n0) or nil,
    ipis_per_io = i0 and i1 and n1 > n0 and (i1 - i0) / (n1 - n0) or nil,
  }
end

-- Time from ADD_DEV to a completed 4 KiB read, per depth and queue count.
-- One O_DIRECT 4 KiB read from this process: spawning dd would cost more
-- than what is measured.
local ffi = require "ffi"
ffi.cdef [[
int open(const char *path, int flags, ...);
long pread(int fd, void *buf, size_t n, long off);
int close(int fd);
int posix_memalign(void **p, size_t align, size_t n);
void free(void *p);
]]
local function read_4k(path)
  local pp = ffi.new("void *[1]")
  assert(ffi.C.posix_memalign(pp, 4096, 4096) == 0)
  local fd = ffi.C.open(path, 0x4000) -- O_RDONLY | O_DIRECT
  assert(fd >= 0, "open " .. path)
  local n = ffi.C.pread(fd, pp[0], 4096, 0)
  ffi.C.close(fd)
  ffi.C.free(pp[0])
  assert(n == 4096, "read " .. path)
end

local function creation()
  local out = {}
  for _ = 1, ROUNDS do
    for _, depth in ipairs({ 64, 128, 1024 }) do
      for _, queues in ipairs({ 1, 2 }) do
        local t0 = ublk.clock()
        local dev = assert(ublk.device { size = "64MiB", depth = depth, queues = queues })
        assert(dev:start())
        read_4k(dev.path)
        local ms = (ublk.clock() - t0) * 1000
        local info = dev:info()
        dev:close()
        local key = ("depth%d-q%d"):format(depth, queues)
        out[key] = out[key] or { depth = depth, queues = queues, samples = {}, kernel_us = {} }
        table.insert(out[key].samples, ms)
        table.insert(out[key].kernel_us, info.create_us + info.start_us)
      end
    end
  end
  return out
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

-- ---- main ----

local results = {
  date = os.date("!%Y-%m-%dT%H:%M:%SZ"), kernel = must("uname -r"):match("%S+"),
  cpus = tonumber(must("nproc"):match("%d+")), quick = quick, rounds = ROUNDS,
  runtime_s = RUNTIME, guest = "QEMU TCG (software emulation), " .. must("nproc"):match("%d+") .. " vCPUs"
    -- with ERMS, TCG's rep movsb makes a copy about 6x dearer (make bench-copy)
    .. (must("cat /proc/cpuinfo"):match("%f[%w]erms%f[%W]") and ", CPU with ERMS" or ", CPU without ERMS"),
  workloads = WORKLOADS, devices = {}, runs = {}, peers = peers,
}
local ok, err = pcall(function()
  syscalls_start()
  log("bench: setting up devices")
  setup()
  -- all of them are torn down, measured or not
  local measured = only(devices, "UBLK_BENCH_ONLY", "name")
  for _, d in ipairs(measured) do results.devices[#results.devices + 1] = d.name end
  for round = 1, ROUNDS do
    for _, w in ipairs(WORKLOADS) do
      for _, d in ipairs(measured) do
        log("bench: round %d/%d %s %s", round, ROUNDS, w.id, d.name)
        local r = run_fio(d, w)
        local key = w.id .. "|" .. d.name
        results.runs[key] = results.runs[key] or {}
        table.insert(results.runs[key], r)
      end
    end
  end
end)
teardown()
syscalls_stop()
if not ok then error(err, 0) end
results.creation = creation()
-- what a Prometheus scrape costs (bench/scrape-cost.sh: its own device
-- and exporter, after the others are gone)
if wanted("scrape-cost") then
  local okc, line = sh("ROUNDS=%d sh bench/scrape-cost.sh", ROUNDS)
  results.scrape_cost = okc and line:match("scrape%-cost [^\n]+") or nil
  if not results.scrape_cost then log("bench: scrape-cost failed: %s", line) end
end

-- medians and spread per cell
results.summary = {}
for key, runs in pairs(results.runs) do
  local s = { n = #runs }
  for _, field in ipairs({ "iops", "mibs", "p50_us", "p99_us", "p999_us", "cpu_ns_per_io",
      "user_cpu_ns_per_io", "all_cpu_ns_per_io", "switches_per_io", "osd_cpu_ns_per_io",
      "syscalls_per_io", "ipis_per_io" }) do
    local vals = {}
    for _, r in ipairs(runs) do vals[#vals + 1] = r[field] end
    if #vals > 0 then
      table.sort(vals)
      s[field] = median(vals)
      s[field .. "_min"], s[field .. "_max"] = vals[1], vals[#vals]
    end
  end
  results.summary[key] = s
end
for _, c in pairs(results.creation) do
  c.median_ms = median(c.samples)
  c.kernel_median_us = median(c.kernel_us)
end

local f = assert(io.open(out_path, "w"))
f:write(json.encode(results, { indent = true }))
f:close()
log("bench: wrote %s", out_path)
