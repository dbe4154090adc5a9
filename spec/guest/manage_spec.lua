-- Devices that outlive their terminal and their server: `ublk-lua add`
-- serves in the background, `list` and `del` see and remove any device
-- whatever its server's state, and a server killed with recovery on leaves
-- a device that `recover` brings back with every byte (fio verify).
local G = require "guest"
local json = require "ublk.json"

local function cli(fmt, ...)
  local ok, out, rc = G.sh(G.bin .. " " .. fmt, ...)
  return rc, out, ok
end

-- `add ...` -> id, pid, the "dev id" line; raises unless it succeeded.
local function add(args)
  local rc, out = cli("add %s", args)
  assert.are.equal(0, rc, out)
  local id, pid = out:match("dev id (%d+): /dev/ublkb%d+ .-, pid (%d+)")
  assert.truthy(id, out)
  return tonumber(id), tonumber(pid), out
end

local function listed(id)
  local rc, out = cli("list -n %d --json", id)
  assert.are.equal(0, rc, out)
  local rows = assert(json.decode(out), out)
  return rows[1]
end

local function alive(pid) return G.sh("kill -0 %d", pid) end

local function wait_until(cond, secs)
  for _ = 1, (secs or 20) * 20 do
    if cond() then return true end
    G.sh("sleep 0.05")
  end
  return false
end

-- Nothing of ublk-lua's left: no device, no record, no store.
local function clean()
  assert.are.same({}, G.leftovers())
  assert.are.equal("", select(2, G.sh("ls /run/ublk-lua 2>/dev/null | grep -v server.log")))
  assert.are.equal("", select(2, G.sh("ls /dev/shm | grep ublk-lua")))
end

describe("#guest device management", function()
  after_each(function()
    G.sh("umount /tmp/ublk-reload 2>/dev/null; umount /tmp/ublk-safe 2>/dev/null")
    G.sh("%s del -a", G.bin)
    G.sh("pkill -9 -f '[u]blk-lua --supervise'; pkill -9 -f '[u]blk-lua --serve'")
    wait_until(function() return #G.leftovers() == 0 end, 10)
  end)

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
    local rc, out = cli("del -n %d", id)
    assert.are.equal(0, rc, out)
    assert.matches("dev id " .. id .. ": removed", out)
    assert.truthy(wait_until(function() return not alive(pid) end), "server still running")
    clean()
  end)

  it("add of a script that fails exits 1 with its error and leaves nothing", function()
    G.write_file("/tmp/bad-size.lua", 'return { size = "12 parsecs" }\n')
    local rc, out = cli("add /tmp/bad-size.lua")
    assert.are.equal(1, rc, out)
    assert.matches("bad%-size%.lua: device 1: .*size", out)
    clean()
    rc, out = cli("add -t memory")
    assert.are.equal(1, rc, out)
    assert.matches("size", out)
    clean()
  end)

  -- the C memory backend (its /dev/shm store) and a RAM disk in Lua (its
  -- ublk.shared region, kept the same way)
  local cases = { { "memory", "-t memory -s 128MiB -q 2" },
                  { "Lua RAM disk", "examples/luamem.lua 128MiB" },
                  { "Lua over a memory delegate", "examples/xor.lua" } }
  -- batch I/O's PREP/FETCH after START_USER_RECOVERY (7.x; where the
  -- kernel lacks it, batch_spec checks the refusal)
  if (require("ublk").features() or {}).batch_io then
    cases[#cases + 1] = { "memory, batch I/O", "-t memory -s 128MiB -q 2 -b" }
  end
  for _, case in ipairs(cases) do
    it("a server killed with recovery on leaves the device QUIESCED; recover serves the waiting I/O, fio verify clean ("
        .. case[1] .. ")", function()
      local id, pid = add(case[2])
      local path = "/dev/ublkb" .. id
      -- two writers on their own halves, paced so the kill lands mid-run;
      -- each verifies everything it wrote at the end
      local fio = G.spawn(("fio --name=v --filename=%s --ioengine=libaio --direct=1 --rw=randwrite "
        .. "--bs=4k --iodepth=16 --numjobs=2 --size=16M --offset_increment=64M --rate_iops=1500 "
        .. "--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 --group_reporting"):format(path), true)
      G.sh("sleep 2")
      G.must("kill -9 %d", pid)
      assert.truthy(wait_until(function() return listed(id).state == "QUIESCED" end), "not QUIESCED")
      local d = listed(id)
      assert.is_true(d.recoverable)
      assert.are.equal("dead", d.ublk_lua.server)
      -- the next server does not take it away
      local id2 = add("-t null -s 16MiB")
      assert.are.equal("QUIESCED", listed(id).state)
      assert.are.equal(0, (cli("del -n %d", id2)))
      local t0 = G.now()
      local rc, out = cli("recover -n %d", id)
      assert.are.equal(0, rc, out)
      assert.matches("dev id " .. id .. ": " .. path .. " 128 MiB, 2 queues x 128, %a+, [^,]+, pid %d+, recovered", out)
      print(("\n  recover (%s): %.2f s to LIVE"):format(case[1], G.now() - t0))
      assert.are.equal("LIVE", listed(id).state)
      assert.are.equal(0, fio:wait(300), fio:out() .. fio:err())
      assert.matches("err= 0", fio:out())
      assert.not_matches("verify", fio:err())
      fio:cleanup()
      rc, out = cli("del -n %d", id)
      assert.are.equal(0, rc, out)
      clean()
    end)
  end

  -- The kernel marks a device QUIESCED only once the killed server's
  -- io_uring and /dev/ublkcN are torn down, which can be after its pid has
  -- gone (on 6.12 seconds after): meanwhile it reads LIVE, and is still
  -- recoverable.
  it("a device whose server was just killed survives the next server's start, and recover brings its data back", function()
    local id, pid = add("-t memory -s 64MiB")
    local path = "/dev/ublkb" .. id
    local md5 = G.write_random_at(path, 1048576, 65536)
    G.must("kill -9 %d", pid)
    assert.truthy(wait_until(function() return not alive(pid) end), "server still there")
    local id2 = add("-t null -s 16MiB") -- its start sweeps what dead servers left
    assert.truthy(G.sh("test -e /sys/class/ublk-char/ublkc%d", id),
      "the next server's start removed device " .. id)
    print(("\n  state after the next server started: %s"):format(listed(id).state))
    assert.are.equal(0, (cli("del -n %d", id2)))
    local rc, out = cli("recover -n %d", id)
    assert.are.equal(0, rc, out)
    assert.matches("dev id " .. id .. ": " .. path .. " .*recovered", out)
    assert.are.equal(md5, G.md5_at(path, 1048576, 65536))
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)

  it("recover right after kill -9 takes over every device of the server, those still LIVE too", function()
    local rc, out = cli("add spec/guest/scripts/two-disks.lua")
    assert.are.equal(0, rc, out)
    local ids, md5s = {}, {}
    for id in out:gmatch("dev id (%d+):") do ids[#ids + 1] = tonumber(id) end
    local pid = tonumber(out:match("pid (%d+)"))
    assert.are.equal(2, #ids, out)
    for i, id in ipairs(ids) do md5s[i] = G.write_random_at("/dev/ublkb" .. id, 0, 65536) end
    G.must("kill -9 %d", pid)
    assert.truthy(wait_until(function() return not alive(pid) end), "server still there")
    rc, out = cli("recover -n %d", ids[1])
    assert.are.equal(0, rc, out)
    for i, id in ipairs(ids) do
      assert.matches("dev id " .. id .. ": /dev/ublkb" .. id .. " .*recovered", out)
      assert.are.equal(md5s[i], G.md5_at("/dev/ublkb" .. id, 0, 65536))
    end
    assert.are.equal(0, (cli("del -a")))
    clean()
  end)

  -- The failed recovery has sent START_USER_RECOVERY for the first
  -- device.  Kernels since 6.15 (QUIESCE came in 6.16) reset a device for
  -- the next recovery when the failed server lets go of /dev/ublkcN;
  -- older ones refuse the next START_USER_RECOVERY (EINVAL).
  it("a recovery that fails on a later device leaves the first one's record whole; a plain recover then succeeds", function()
    local rc, out = cli("add spec/guest/scripts/two-disks.lua")
    assert.are.equal(0, rc, out)
    local ids, md5s = {}, {}
    for id in out:gmatch("dev id (%d+):") do ids[#ids + 1] = tonumber(id) end
    local pid = tonumber(out:match("pid (%d+)"))
    for i, id in ipairs(ids) do md5s[i] = G.write_random_at("/dev/ublkb" .. id, 0, 65536) end
    local before = G.read_file("/run/ublk-lua/dev" .. ids[1])
    G.must("kill -9 %d", pid)
    assert.truthy(wait_until(function()
      return listed(ids[1]).state == "QUIESCED" and listed(ids[2]).state == "QUIESCED"
    end), "not QUIESCED")
    -- the first device is recovered, the second is refused (its size)
    rc, out = cli("recover -n %d spec/guest/scripts/two-disks.lua 16MiB", ids[1])
    assert.are.equal(1, rc, out)
    assert.matches("device " .. ids[2] .. " has 65536 sectors", out)
    assert.are.equal(before, G.read_file("/run/ublk-lua/dev" .. ids[1]))
    assert.is_true(listed(ids[1]).recoverable)
    if (require("ublk").features() or {}).quiesce then
      rc, out = cli("recover -n %d", ids[1]) -- the recorded script, both devices
      assert.are.equal(0, rc, out)
      for i, id in ipairs(ids) do
        assert.matches("dev id " .. id .. ": /dev/ublkb" .. id .. " .*recovered", out)
        assert.are.equal(md5s[i], G.md5_at("/dev/ublkb" .. id, 0, 65536))
      end
    end
    assert.are.equal(0, (cli("del -a")))
    clean()
  end)

  it("recover refuses a read-only server for a writable device, naming why, and leaves it recoverable", function()
    local id, pid = add("spec/guest/scripts/ro-or-rw.lua rw")
    local path = "/dev/ublkb" .. id
    local md5 = G.write_random_at(path, 0, 65536)
    G.must("kill -9 %d", pid)
    assert.truthy(wait_until(function() return listed(id).state == "QUIESCED" end), "not QUIESCED")
    local rc, out = cli("recover -n %d spec/guest/scripts/ro-or-rw.lua ro", id)
    assert.are.equal(1, rc, out)
    assert.matches("device " .. id .. " is writable, the recovering server's has read_only = true", out)
    assert.is_true(listed(id).recoverable)
    rc, out = cli("recover -n %d", id) -- the recorded script and arguments
    assert.are.equal(0, rc, out)
    assert.are.equal(md5, G.md5_at(path, 0, 65536))
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)

  it("add --restart recovers by itself when the server is killed under fio verify", function()
    local id, pid, line = add("--restart 2 -t memory -s 128MiB -q 2")
    assert.matches("supervised", line)
    local path = "/dev/ublkb" .. id
    local fio = G.spawn(("fio --name=v --filename=%s --ioengine=libaio --direct=1 --rw=randwrite "
      .. "--bs=4k --iodepth=16 --numjobs=2 --size=16M --offset_increment=64M --rate_iops=1500 "
      .. "--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 --group_reporting"):format(path), true)
    G.sh("sleep 2")
    local t0 = G.now()
    G.must("kill -9 %d", pid)
    assert.truthy(wait_until(function()
      local d = listed(id)
      return d.state == "LIVE" and d.ublk_lua and d.ublk_lua.pid ~= pid and d.ublk_lua.server == "running"
    end, 30), "not recovered")
    print(("\n  --restart: kill -9 to LIVE again %.2f s"):format(G.now() - t0))
    assert.are.equal(0, fio:wait(300), fio:out() .. fio:err())
    assert.matches("err= 0", fio:out())
    fio:cleanup()
    local rc, out = cli("del -n %d", id)
    assert.are.equal(0, rc, out)
    assert.truthy(wait_until(function() return not G.sh("pgrep -f '[u]blk-lua --supervise'") end, 20),
      "supervisor still running")
    clean()
  end)

  -- A server that leaves without removing its devices starts a reaper
  -- (`ublk-lua --reap PID ID...`), which deletes them once PID has gone;
  -- meanwhile another server's sweep may have deleted one and a new device
  -- taken its id.  That new device is run by a live server here.
  it("a reaper leaves alone a device whose id has become another server's", function()
    local id, pid = add("-t memory -s 32MiB")
    local path = "/dev/ublkb" .. id
    local md5 = G.write_random_at(path, 0, 65536)
    local gone = tonumber(G.must("sh -c 'echo $$'"):match("%d+"))
    local _, out = G.sh("%s --reap %d %d", G.bin, gone, id)
    assert.matches("reaper: device " .. id .. " is now pid " .. pid .. "'s, no longer " .. gone
      .. "'s: left alone", out)
    assert.are.equal("LIVE", listed(id).state)
    assert.truthy(G.sh("test -f /run/ublk-lua/dev%d", id), "its record was removed")
    assert.are.equal(md5, G.md5_at(path, 0, 65536))
    assert.are.equal(0, (cli("del -n %d", id)))
    assert.truthy(wait_until(function() return not alive(pid) end), "server still running")
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
    assert.matches("read .* IOPS .* p50 %d+ us", text)
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

  it("reload swaps a Lua backend under a mounted, busy ext4: no I/O error, fsck clean, bytes intact", function()
    G.must("rm -f /tmp/reload.img /tmp/ublk-reload-version && truncate -s 64M /tmp/reload.img")
    local id = add("spec/guest/scripts/reloadable.lua v1 /tmp/reload.img")
    local path = "/dev/ublkb" .. id
    assert.are.equal("v1", G.read_file("/tmp/ublk-reload-version"))
    G.must("mkfs.ext4 -q %s && mkdir -p /tmp/ublk-reload && mount %s /tmp/ublk-reload", path, path)
    G.must("mkdir -p /tmp/reload-src && for i in $(seq 1 30); do "
      .. "head -c 200000 /dev/urandom > /tmp/reload-src/f$i; done")
    -- a writer that stops at the first I/O error
    local writer = G.spawn("set -e; for i in $(seq 1 30); do cp /tmp/reload-src/f$i /tmp/ublk-reload/; "
      .. "sync /tmp/ublk-reload/f$i; sleep 0.1; done", true)
    G.sh("sleep 1")
    local rc, out = cli("reload -n %d spec/guest/scripts/reloadable.lua v2 /tmp/reload.img", id)
    assert.are.equal(0, rc, out)
    print("\n  " .. out:match("reloaded in %d+ ms"))
    assert.matches("dev id " .. id .. ": " .. path .. " .*recovered", out)
    assert.are.equal(0, writer:wait(120), writer:out() .. writer:err())
    writer:cleanup()
    assert.are.equal("v2", G.read_file("/tmp/ublk-reload-version"))
    G.must("cd /tmp/reload-src && md5sum f* > /tmp/reload.md5 && cd /tmp/ublk-reload && md5sum -c --quiet /tmp/reload.md5")
    G.must("umount /tmp/ublk-reload")
    G.must("e2fsck -fn %s", path)
    G.must("mount %s /tmp/ublk-reload && cd /tmp/ublk-reload && md5sum -c --quiet /tmp/reload.md5 && cd / && umount /tmp/ublk-reload", path)
    assert.are.equal(0, (cli("del -n %d", id)))
    G.sh("rm -rf /tmp/reload-src /tmp/reload.img /tmp/reload.md5")
    clean()
  end)

  it("reload refuses a server with a device without recovery; a hand-over asked anyway removes that one, never leaves it DEAD", function()
    local rc, out = cli("add spec/guest/scripts/mixed-recovery.lua")
    assert.are.equal(0, rc, out)
    local pid, keep, drop = tonumber(out:match("pid (%d+)")), nil, nil
    for id in out:gmatch("dev id (%d+):") do
      id = tonumber(id)
      local flags = " " .. table.concat(listed(id).flags, " ") .. " "
      if flags:match(" user_recovery ") then keep = id else drop = id end
    end
    assert.truthy(keep and drop, out)
    local md5 = G.write_random_at("/dev/ublkb" .. keep, 0, 65536)
    rc, out = cli("reload -n %d", keep)
    assert.are.equal(1, rc, out)
    assert.matches("device " .. drop .. ", served by the same server %(pid " .. pid .. "%) as device "
      .. keep .. ", was added with recovery = false", out)
    assert.is_true(alive(pid), "the server was signalled")
    assert.are.equal("LIVE", listed(drop).state)
    -- the hand-over a reload asks for, asked anyway
    G.must("touch /run/ublk-lua/dev%d.handover /run/ublk-lua/dev%d.handover", keep, drop)
    G.must("kill -TERM %d", pid)
    assert.truthy(wait_until(function() return not alive(pid) end), "server still there")
    G.must("rm -f /run/ublk-lua/dev%d.handover /run/ublk-lua/dev%d.handover", keep, drop)
    assert.falsy(G.sh("test -e /sys/class/ublk-char/ublkc%d", drop), "device " .. drop .. " left behind")
    assert.matches("/dev/ublkb" .. drop .. " removed %(not handed over%)", G.read_file("/run/ublk-lua/server.log"))
    assert.truthy(wait_until(function() return listed(keep).recoverable end), "not recoverable")
    rc, out = cli("recover -n %d", keep)
    assert.are.equal(0, rc, out)
    assert.matches("dev id " .. keep .. ": /dev/ublkb" .. keep .. " .*recovered", out)
    assert.are.equal(md5, G.md5_at("/dev/ublkb" .. keep, 0, 65536))
    assert.are.equal(0, (cli("del -a")))
    clean()
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
    assert.matches("EBUSY: /dev/ublkb" .. id .. " is open by mounted on /tmp/ublk%-safe: not stopped", out)
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
    for _ = 1, 200 do cycle() end
    print(("\n  create + start + close: %.1f ms a cycle"):format((G.now() - t0) * 5))
    assert.are.equal(before, fds())
    collectgarbage()
    local grew = G.rss_anon_kib() - rss
    print(("  anonymous memory after 200 cycles: %+d KiB"):format(grew))
    assert.truthy(grew < 1024, ("RssAnon grew by %d KiB over 200 cycles"):format(grew))
    clean()
  end)

  it("20 add/del cycles leave no device, record or store", function()
    local t0 = G.now()
    for _ = 1, 20 do
      local id = add("-t memory -s 16MiB")
      local rc, out = cli("del -n %d", id)
      assert.are.equal(0, rc, out)
    end
    print(("\n  add + del: %.0f ms a cycle"):format((G.now() - t0) * 50))
    clean()
  end)
end)
