-- Devices that outlive their terminal: `ublk-lua add` serves in the
-- background, `list` and `del` see and remove any device whatever its
-- server's state, `stats` reads a running server; what servers that
-- die leave, and recovering it, are in recovery_spec.lua.
local G = require "guest"
local json = require "ublk.json"
local M = require "manage"
local cli, add, listed, alive, wait_until, clean = M.cli, M.add, M.listed, M.alive, M.wait_until, M.clean

describe("#guest device management", function()
  after_each(M.reset)

  it("add returns once the device is usable; list shows it; del removes it and its server", function()
    local id, pid, line = add("-t memory -s 64MiB -q 2")
    assert.matches("dev id " .. id .. ": /dev/ublkb" .. id .. " 64 MiB, 2 queues x 128, memory, [^,]*user copy, pid", line)
    local path = "/dev/ublkb" .. id
    local md5 = G.write_random_at(path, 1048576, 65536)
    assert.are.equal(md5, G.md5_at(path, 1048576, 65536))
    local d = listed(id)
    assert.are.equal("LIVE", d.state)
    assert.are.equal(2, d.queues)
    assert.are.equal(64 * 1048576, d.size)
    assert.are.equal("running", d.ublk_lua.server)
    assert.are.equal(pid, d.ublk_lua.pid)
    assert.are.equal("reissue", d.ublk_lua.recovery)
    assert.truthy(G.sh("test -f %s", d.ublk_lua.store))
    local _, text = cli("list")
    assert.matches("dev id " .. id .. ": LIVE, 64 MiB, 2 queues x 128", text)
    -- idle, the server's main thread sleeps until a signal or a request
    -- (ublk.requests: watch); it looked for requests every 200 ms before
    local function switches()
      return tonumber(G.read_file(("/proc/%d/status"):format(pid))
        :match("\nvoluntary_ctxt_switches:%s*(%d+)"))
    end
    local s0 = switches()
    G.sh("sleep 2")
    local woke = switches() - s0
    print(("\n  an idle server's main thread woke %d times in 2 s"):format(woke))
    assert.is_true(woke <= 2, "the idle server woke " .. woke .. " times")
    assert.matches("dev id " .. id .. ": removed", M.del_until_gone(id, pid))
    clean()
  end)

  it("add of a script that serves in a loop of its own returns once its device is ready", function()
    -- ready at the script's first ublk.wait_signal with a device made: the
    -- script never returns, and add waited for that before
    local id, pid, line = add("spec/guest/scripts/loop-wait.lua")
    assert.matches("dev id " .. id .. ": /dev/ublkb" .. id .. " 8 MiB", line)
    local path = "/dev/ublkb" .. id
    local md5 = G.write_random_at(path, 0, 65536)
    assert.are.equal(md5, G.md5_at(path, 0, 65536))
    assert.are.equal("running", listed(id).ublk_lua.server)
    M.del_until_gone(id, pid)
    clean()
  end)

  it("add of a script that fails exits 1 with its error and leaves nothing", function()
    G.write_file("/tmp/bad-size.lua", 'return { size = "12 parsecs" }\n')
    local rc, out = cli("add /tmp/bad-size.lua")
    assert.are.equal(1, rc, out)
    assert.matches("bad%-size%.lua: [^\n]*size", out)
    clean()
    rc, out = cli("add -t memory")
    assert.are.equal(1, rc, out)
    assert.matches("size", out)
    clean()
  end)

  it("del removes a DEAD device (no recovery), a QUIESCED one, and -a all of them", function()
    local dead_id, dead_pid = add("spec/guest/scripts/no-recovery.lua")
    local q_id, q_pid = add("-t memory -s 32MiB")
    local live_id = add("-t null -s 32MiB")
    G.must("kill -9 %d %d", dead_pid, q_pid)
    assert.truthy(wait_until(function() return listed(dead_id).state == "DEAD" end), "not DEAD")
    assert.truthy(wait_until(function() return listed(q_id).state == "QUIESCED" end), "not QUIESCED")
    local store = listed(q_id).ublk_lua.store
    assert.truthy(G.sh("test -f %s", store))
    local rc, out = cli("del -n %d", dead_id)
    assert.are.equal(0, rc, out)
    local t0 = G.now()
    rc, out = cli("del -a")
    assert.are.equal(0, rc, out)
    assert.truthy(G.now() - t0 < 30)
    assert.matches("dev id " .. q_id .. ": removed", out)
    assert.matches("dev id " .. live_id .. ": removed", out)
    assert.falsy(G.sh("test -e %s", store))
    clean()
  end)

  it("tells systemd it is ready (sd_notify READY=1) once its device is usable", function()
    G.sh("rm -f /tmp/ublk-notify.sock /tmp/ublk-notify.sock.bound")
    local recv = G.spawn("/usr/bin/python3 spec/guest/scripts/notify-recv.py /tmp/ublk-notify.sock", true)
    assert.truthy(G.sh("timeout 30 sh -c 'until [ -e /tmp/ublk-notify.sock.bound ]; do sleep 0.05; done'"),
      recv:err())
    local p = G.serve("examples/mydisk.lua", "NOTIFY_SOCKET=/tmp/ublk-notify.sock")
    assert.truthy(recv:wait_output("disks=%d", 30), recv:err())
    assert.matches("READY=1 MAINPID=%d+ disks=1", recv:out())
    p:kill("TERM")
    assert.are.equal(0, p:wait(30))
    p:cleanup()
    recv:cleanup()
    G.sh("rm -f /tmp/ublk-notify.sock /tmp/ublk-notify.sock.bound")
  end)

  it("stats gives rates and latency percentiles from the running server; a slow backend shows", function()
    local fast = add("-t memory -s 64MiB")
    local slow = add("examples/slow.lua 20")
    local jobs = {}
    for _, id in ipairs({ fast, slow }) do
      jobs[#jobs + 1] = G.spawn(("fio --name=r --filename=/dev/ublkb%d --ioengine=libaio --direct=1 "
        .. "--rw=randread --bs=4k --iodepth=4 --time_based --runtime=10"):format(id), true)
    end
    G.sh("sleep 1.5")
    local function sample(id)
      local rc, out = cli("stats -n %d --json", id)
      assert.are.equal(0, rc, out)
      return assert(json.decode(out), out)
    end
    local f = sample(fast)
    local _, text = cli("stats -n %d", fast)
    local sl = sample(slow)
    for _, j in ipairs(jobs) do j:wait(60); j:cleanup() end
    print(("\n  stats: memory %.0f IOPS p50 %.0f us p99 %.0f us; slow.lua 20 ms: %.0f IOPS p50 %.0f us"):format(
      f.read.iops, f.read.p50_us, f.read.p99_us, sl.read.iops, sl.read.p50_us))
    assert.truthy(f.read.iops > 0 and sl.read.iops > 0)
    assert.truthy(sl.read.p50_us > 15000 and sl.read.p50_us < 40000, sl.read.p50_us)
    assert.truthy(f.read.p50_us < sl.read.p50_us / 4, f.read.p50_us)
    assert.are.equal(0, f.errors)
    -- the last second and the totals since the start, in a person's units
    assert.matches("last 1%.%d%d s\n  read +%d+ +[%d.]+ %a+ +%d+ +[%d.]+ %a+/s +[%d.]+ [mu]?s", text)
    assert.matches("since start, %d+ s\n  read +%d+ +[%d.]+ %a+ +%d+ +[%d.]+ %a+/s +[%d.]+ [mu]?s", text)
    assert.truthy(f.total.read.count >= f.read.count and f.total.seconds >= f.seconds, f.total)
  end)

  it("dev:stats() in Lua has the same latency percentiles", function()
    local ublk = require "ublk"
    local dev = assert(ublk.device{ size = "16MiB", recovery = false })
    assert(dev:start())
    G.must("dd if=%s of=/dev/null bs=4k count=256 iflag=direct 2>/dev/null", dev.path)
    local st = dev:stats()
    assert.truthy(st.latency.read.count >= 256, st.latency.read.count)
    assert.truthy(st.latency.read.p50_us > 0 and st.latency.read.p99_us >= st.latency.read.p50_us)
    assert.are.equal(st.total.reads, st.latency.read.count)
    assert(dev:close())
  end)

  it("del --safe leaves a mounted disk alone, naming the mount, and removes it once closed (7.0+)", function()
    local id, pid = add("-t memory -s 64MiB")
    local path = "/dev/ublkb" .. id
    local has = require("ublk").features().safe_stop_dev
    if not has then
      -- this kernel has no TRY_STOP_DEV: refused, nothing touched
      local rc, out = cli("del -n %d --safe", id)
      assert.are.equal(1, rc, out)
      assert.matches("EOPNOTSUPP: a safe stop needs UBLK_F_SAFE_STOP_DEV %(Linux 7.0%)", out)
      assert.are.equal("LIVE", listed(id).state)
      assert.is_true(alive(pid))
      return
    end
    G.must("mkfs.ext4 -q %s && mkdir -p /tmp/ublk-safe && mount %s /tmp/ublk-safe", path, path)
    G.must("dd if=/dev/urandom of=/tmp/ublk-safe/f bs=64k count=16 status=none && sync")
    local md5 = G.must("md5sum < /tmp/ublk-safe/f")
    local rc, out = cli("del -n %d --safe", id)
    assert.are.equal(1, rc, out)
    assert.matches("EBUSY: /dev/ublkb" .. id .. " is mounted on /tmp/ublk%-safe: not stopped", out)
    assert.are.equal("LIVE", listed(id).state)
    G.must("echo 3 > /proc/sys/vm/drop_caches")
    assert.are.equal(md5, G.must("md5sum < /tmp/ublk-safe/f"))
    G.must("umount /tmp/ublk-safe")
    rc, out = cli("del -n %d --safe", id)
    assert.are.equal(0, rc, out)
    assert.matches("dev id " .. id .. ": removed", out)
    assert.truthy(wait_until(function() return not alive(pid) end), "server still running")
    clean()
  end)

  -- The server removes it with DEL_DEV_ASYNC and ends; the mount keeps
  -- the device's number until it lets go.  `del` waited for the number
  -- to go, 10 s, then SIGKILLed a server that had already ended.
  it("del of a mounted disk returns once its server has ended, saying it is still mounted", function()
    local id, pid = add("-t memory -s 64MiB")
    local path = "/dev/ublkb" .. id
    G.must("mkfs.ext4 -q %s && mkdir -p /tmp/ublk-safe && mount %s /tmp/ublk-safe", path, path)
    local t0 = G.now()
    local rc, out = cli("del -n %d", id)
    local secs = G.now() - t0
    assert.are.equal(0, rc, out)
    assert.matches("dev id " .. id .. ": removed", out)
    assert.matches("is still mounted on /tmp/ublk%-safe", out .. G.read_file("/run/ublk-lua/server.log"))
    assert.not_matches("did not remove it", out)
    assert.falsy(alive(pid))
    print(("\n  del of a mounted disk: %.2f s"):format(secs))
    assert.truthy(secs < 5, ("del took %.1f s"):format(secs))
    G.must("umount /tmp/ublk-safe")
    clean()
  end)

  it("del removes the device of a stopped server (SIGSTOP) without hanging", function()
    local id, pid = add("-t memory -s 32MiB")
    G.must("kill -STOP %d", pid)
    local t0 = G.now()
    local rc, out = cli("del -n %d", id)
    assert.are.equal(0, rc, out)
    assert.truthy(G.now() - t0 < 30)
    assert.truthy(wait_until(function() return not alive(pid) end), "server still there")
    clean()
  end)

  it("features names what the kernel has and what ublk-lua uses", function()
    local rc, out = cli("features --json")
    assert.are.equal(0, rc, out)
    local f = assert(json.decode(out))
    local has = {}
    for _, n in ipairs(f.features) do has[n] = true end
    assert.is_true(has.user_recovery and has.user_recovery_reissue and has.user_copy)
    assert.truthy(#f.used >= 4)
  end)

  it("200 create/start/close cycles in one process leave no device, record, store, fd or memory", function()
    local ublk = require "ublk"
    local ffi = require "ffi"
    pcall(ffi.cdef, "int getpid(void);")
    local function fds()
      return tonumber(G.must("ls /proc/%d/fd | wc -l", ffi.C.getpid()):match("%d+"))
    end
    local function cycle()
      local dev = assert(ublk.device{ size = "4MiB", queues = 2 })
      assert(dev:start())
      assert(dev:close())
    end
    cycle() -- the first one opens what stays open (Lua modules, libraries)
    collectgarbage()
    local before, rss, t0 = fds(), G.rss_anon_kib(), G.now()
    -- RssAnon after each 50 cycles: a leak grows it in every quarter; the
    -- C library's own one-time growth (a malloc arena, a cached thread
    -- stack: +2 MiB once, between cycles 100 and 125, in one 6.12 run
    -- with the Ceph client linked in) in one
    local at, last = {}, rss
    local quarters = {}
    for k = 1, 200 do
      cycle()
      if k % 50 == 0 then
        collectgarbage()
        local now = G.rss_anon_kib()
        at[#at + 1], quarters[#quarters + 1], last = now - rss, now - last, now
      end
    end
    print(("\n  create + start + close: %.1f ms a cycle"):format((G.now() - t0) * 5))
    assert.are.equal(before, fds())
    print(("  anonymous memory after 50, 100, 150, 200 cycles: %s KiB"):format(table.concat(at, ", ")))
    local least = math.min(quarters[2], quarters[3], quarters[4])
    assert.truthy(least < 256, ("RssAnon grew by %d KiB or more in each 50 cycles (%s): a leak of "
      .. "%.1f KiB a cycle or more"):format(least, table.concat(quarters, ", "), least / 50))
    assert.truthy(at[4] < 8192, ("RssAnon grew by %d KiB over 200 cycles"):format(at[4]))
    clean()
  end)

  it("5 add/del cycles leave no device, record or store", function()
    local t0 = G.now()
    for _ = 1, 5 do
      local id = add("-t memory -s 16MiB")
      local rc, out = cli("del -n %d", id)
      assert.are.equal(0, rc, out)
    end
    print(("\n  add + del: %.0f ms a cycle"):format((G.now() - t0) * 200))
    clean()
  end)
end)
