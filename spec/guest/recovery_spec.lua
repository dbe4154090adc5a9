-- A server killed with recovery on leaves a device that `recover` brings
-- back with every byte (fio verify); the next server, a reaper, a reload
-- and a recovery that fails never take away or leave DEAD what is still
-- recoverable; `reload` swaps a running server's script.
local G = require "guest"
local M = require "manage"
local cli, add, listed, alive, wait_until, clean = M.cli, M.add, M.listed, M.alive, M.wait_until, M.clean

describe("#guest recovery", function()
  after_each(M.reset)

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
      local fio = M.verify_writer(path, 16, 64, 1500)
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
    -- counted for /metrics, for as long as the device lives
    local _, prom = cli("stats --prom -n %d", id)
    assert.matches('\nublk_device_recoveries_total{dev="' .. id .. '"} 1\n', prom)
    assert.matches('\nublk_device_reloads_total{dev="' .. id .. '"} 0\n', prom)
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

  -- Every device of a recovering server is checked against its backend
  -- before the kernel is asked to hand any over (device.h: prepare), so
  -- the second device's refusal comes before START_USER_RECOVERY of the
  -- first.  Once it came after, and kernels before 6.15, which do not
  -- reset a device whose recovery failed, refused the next recovery.
  it("a recovery refused on a later device touches none; the first one's record stays whole; a plain recover then succeeds", function()
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
    assert.matches("two%-disks%.lua: device 2: EINVAL: .* not the device's 16777216", out)
    assert.are.equal(before, G.read_file("/run/ublk-lua/dev" .. ids[1]))
    assert.is_true(listed(ids[1]).recoverable)
    assert.matches("device " .. ids[1] .. " QUIESCED, device " .. ids[2] .. " QUIESCED", out)
    rc, out = cli("recover -n %d", ids[1]) -- the recorded script, both devices
    assert.are.equal(0, rc, out)
    for i, id in ipairs(ids) do
      assert.matches("dev id " .. id .. ": /dev/ublkb" .. id .. " .*recovered", out)
      assert.are.equal(md5s[i], G.md5_at("/dev/ublkb" .. id, 0, 65536))
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
    local fio = M.verify_writer(path, 16, 64, 1500)
    G.sh("sleep 2")
    local back = M.kill_until_restarted(id, pid, 30)
    print(("\n  --restart: kill -9 to LIVE again %.2f s"):format(back))
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
    print("\n  " .. out:match("reloaded in %d+ ms %(I/O paused %d+ ms%)"))
    assert.matches("dev id " .. id .. ": " .. path .. " .*recovered", out)
    assert.are.equal(0, writer:wait(120), writer:out() .. writer:err())
    writer:cleanup()
    assert.are.equal("v2", G.read_file("/tmp/ublk-reload-version"))
    local _, prom = cli("stats --prom -n %d", id)
    assert.matches('\nublk_device_reloads_total{dev="' .. id .. '"} 1\n', prom)
    assert.matches('\nublk_device_recoveries_total{dev="' .. id .. '"} 0\n', prom)
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
end)
