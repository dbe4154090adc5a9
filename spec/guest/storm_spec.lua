-- The kernel selftests' stress_04 pattern (tools/testing/selftests/ublk/
-- test_stress_04.sh), with ublk-lua's own servers: four devices added at
-- once (null twice, the file backend in zero copy where the kernel has
-- auto buffer registration, a Lua backend doing its own asynchronous file
-- I/O), each under stress_04's two buffered fio runs (libaio, and io_uring in
-- batches with force_async) of two jobs at iodepth 256, then every server
-- killed with SIGKILL.  Whatever the kill interrupts, every device must
-- leave LIVE within a bounded time (QUIESCED and recoverable with recovery
-- on, removed by the next server without it), the control path must keep
-- answering (`list`, a new `add`, `recover`), and `del -a` must leave
-- nothing behind.
local ublk = require "ublk"
local G = require "guest"
local M = require "manage"
local json = require "ublk.json"
local cli, listed, clean = M.cli, M.listed, M.clean

local features = ublk.features() or {} -- nil on a host without ublk (busted loads this file there too)
-- 6.12 has no UBLK_F_AUTO_BUF_REG: the file backend's default copy there
local FILE_COPY = features.auto_buf_reg and "auto_reg" or "-"
-- UBLK_STORM_ROUNDS: more rounds, to hunt a rare interleaving by hand
local ROUNDS = tonumber(os.getenv("UBLK_STORM_ROUNDS")) or 4
-- UBLK_STORM_FIO_SIZE: how much of each device fio covers (the kernel's
-- stress_04 covers the whole device: more dirty pages at the kill)
local FIO_SIZE = os.getenv("UBLK_STORM_FIO_SIZE") or "64M"
-- How long a device may stay LIVE after its server is killed.  7.x
-- releases it at once (ublk_ch_release_work_fn: milliseconds).  6.12
-- notices a dead server from a monitor work item every 5 s and quiesces
-- the device only once every request the server held has come back; under
-- this load some come back only at the block layer's 30 s request timeout.
local KMAJOR = tonumber((select(2, G.sh("uname -r")) or ""):match("^(%d+)")) or 0
local SETTLE_S = KMAJOR >= 7 and 15 or 45
-- 6.12.95 panics under this storm: a NULL dereference in io_fallback_tw
-- (io_uring's exit-time task work, run by do_exit of a SIGKILLed ublk-lua
-- server), with file, memory or null servers alike.  It did in 4 of the
-- last 5 runs on 6.12, and again in the boot that reran from here, which
-- fails the whole guest run.  A kernel bug, not a verdict on ublk-lua: on
-- 6.12 the storm is skipped, by name (UBLK_STORM_612=1 runs it, to hunt
-- the bug).  Single kills under lighter load (recovery_spec, rbd_spec,
-- service_spec) still run there; 7.x runs the storm.
local RUN_STORM = KMAJOR >= 7 or os.getenv("UBLK_STORM_612") == "1"
local DIR = "/tmp/ublk-storm"
local FILE, LUA_FILE = DIR .. "/file.img", DIR .. "/lua.img"

-- The four servers, started at once: id and pid of each device.
local function add_four(recovery)
  local r = recovery and "reissue" or "false"
  G.must("rm -f %s/add*; truncate -s 128M %s", DIR, LUA_FILE)
  local adds = {
    ("add -t null -s 1GiB -q 2 -r %s"):format(r),
    ("add -t null -s 1GiB -q 2 -r %s"):format(r),
    ("add spec/guest/scripts/storm-file.lua %s %s %s"):format(FILE, FILE_COPY, r),
    ("add spec/guest/scripts/storm-lua.lua %s %s"):format(LUA_FILE, r),
  }
  local cmd = {}
  for i, a in ipairs(adds) do
    cmd[#cmd + 1] = ("timeout 30 %s %s > %s/add%d 2>&1 &"):format(G.bin, a, DIR, i)
  end
  G.sh(table.concat(cmd, " ") .. " wait")
  local devs = {}
  for i = 1, #adds do
    local out = G.read_file(("%s/add%d"):format(DIR, i))
    local id, pid = out:match("dev id (%d+): /dev/ublkb%d+ .-, pid (%d+)")
    assert(id, ("add %d (%s) did not become ready: %s"):format(i, adds[i], out))
    devs[#devs + 1] = { id = tonumber(id), pid = tonumber(pid), what = adds[i] }
  end
  return devs
end

-- Polls cond every 0.1 s until it holds or secs of wall time passed (a
-- poll here runs `list` per device, which is slow under emulation).
local function until_deadline(secs, cond)
  local deadline = G.now() + secs
  repeat
    if cond() then return true end
    G.sh("sleep 0.1")
  until G.now() > deadline
  return cond()
end

-- What holds each device's /dev/ublkcN, the tasks in D state and the
-- kernel's view: printed when a device stays LIVE without its server.
local function evidence(devs)
  local lines = { select(2, G.sh("timeout 10 %s list", G.bin)) }
  for _, d in ipairs(devs) do
    lines[#lines + 1] = select(2, G.sh("for p in /proc/[0-9]*; do ls -l $p/fd 2>/dev/null | "
      .. "grep -q /dev/ublkc%d && echo \"ublkc%d held by ${p#/proc/} $(cat $p/comm)\"; done",
      d.id, d.id))
  end
  lines[#lines + 1] = select(2, G.sh("ps -eLo pid,tid,stat,wchan:32,comm | awk '$3 ~ /D/'"))
  lines[#lines + 1] = select(2, G.sh("echo w > /proc/sysrq-trigger; dmesg | tail -80"))
  return table.concat(lines, "\n")
end

describe("#guest kill storm", function()
  after_each(function()
    G.sh("kill -9 $(cat %s/fio.pids 2>/dev/null) 2>/dev/null", DIR)
    -- and if any fio made a regular file where a device node was, it goes
    local _, files = G.sh("find /dev -maxdepth 1 -name 'ublkb*' -type f")
    G.sh("find /dev -maxdepth 1 -name 'ublkb*' -type f -delete")
    assert.are.equal("", files, "fio made regular files in /dev")
    M.reset()
    G.sh("rm -rf %s", DIR)
  end)

  it(("%d rounds of 4 devices (null x2, file %s, Lua async file) under buffered fio "
      .. "(libaio, io_uring force_async) iodepth 256 x2, every server killed: none stays LIVE, "
      .. "`del` at once never wedges, the control path answers, nothing is left"):format(ROUNDS,
        FILE_COPY == "auto_reg" and "auto_reg" or "in its default copy (no auto_reg on this kernel)"),
      function()
    if not RUN_STORM then
      print(("# SKIP kill storm on %s: its io_uring panics (io_fallback_tw) when a ublk server is "
        .. "SIGKILLed under this load; UBLK_STORM_612=1 runs it"):format((G.must("uname -r"):gsub("%s+$", ""))))
      return
    end
    G.must("mkdir -p %s", DIR)
    local t_all = G.now()
    for round = 1, ROUNDS do
      -- four kinds of round: recovery on (then recover the null device);
      -- stress_04's own, recovery off, the devices die (the next server
      -- removes them); recovery on (recover the Lua one); recovery off and
      -- `del` of every device the moment its server is killed, while the
      -- kernel still releases it (a DEL_DEV then waits in del_gendisk with
      -- the driver's control mutex held)
      local kind = (round - 1) % 4 + 1
      local recovery = kind == 1 or kind == 3
      local t0 = G.now()
      local devs = add_four(recovery)
      for _, d in ipairs(devs) do
        -- stress_04's pair: libaio, and io_uring submitting in batches
        -- with every 7th request forced through io-wq (force_async)
        for _, job in ipairs { "--ioengine=libaio",
            "--ioengine=io_uring --iodepth_batch_submit=32 --iodepth_batch_complete_min=32 "
              .. "--force_async=7" } do
          -- allow_file_create=0: a job that starts after its device is
          -- gone must fail, not make /dev/ublkbN a regular file (which
          -- would take the next device's I/O into devtmpfs)
          G.must("timeout 60 fio --name=s --filename=/dev/ublkb%d %s --rw=randrw --norandommap "
            .. "--allow_file_create=0 "
            .. "--iodepth=256 --numjobs=2 --size=%s --runtime=12 --time_based > /dev/null 2>&1 & "
            .. "echo $! >> %s/fio.pids", d.id, job, FIO_SIZE, DIR)
        end
      end
      G.sh("sleep 1")
      if kind == 4 then
        local t_del, dels = G.now(), {}
        for _, d in ipairs(devs) do
          dels[#dels + 1] = ("(kill -9 %d; timeout 60 %s del -n %d > %s/del%d 2>&1; echo $? >> %s/del%d) &")
            :format(d.pid, G.bin, d.id, DIR, d.id, DIR, d.id)
        end
        G.sh(table.concat(dels, " ") .. " wait")
        t_del = G.now() - t_del
        for _, d in ipairs(devs) do
          local out = G.read_file(("%s/del%d"):format(DIR, d.id))
          assert.truthy(out:match("\n0\n$"), ("%s: del right after the kill: %s\n%s"):format(d.what, out,
            t_del > 50 and evidence(devs) or ""))
        end
        local rc, out = cli("list")
        assert.are.equal(0, rc, out)
        local new_id = M.add("-t null -s 16MiB")
        G.must("timeout 10 dd if=/dev/ublkb%d of=/dev/null bs=64k count=16 iflag=direct status=none", new_id)
        assert.truthy(G.sh("timeout 30 %s del -a", G.bin))
        assert.truthy(G.sh("timeout 30 sh -c 'for p in $(cat %s/fio.pids); do "
          .. "while kill -0 $p 2>/dev/null; do sleep 0.1; done; done'", DIR), "fio still running")
        -- deleted while fio held them: gone once it let go
        for _, d in ipairs(devs) do
          assert.truthy(d.id == new_id or until_deadline(10, function()
            return not G.sh("test -e /sys/class/ublk-char/ublkc%d", d.id)
          end), d.what .. ": still there after its del and fio's end")
        end
        G.must("rm -f %s/fio.pids %s/del*", DIR, DIR)
        clean()
        print(("\n  round %d (recovery off, del at once): %.1f s; the four kills and dels took %.2f s")
          :format(round, G.now() - t0, t_del))
        goto next_round
      end
      for _, d in ipairs(devs) do
        G.must("kill -9 %d", d.pid)
        G.sh("sleep 0.2")
      end
      local t_kill = G.now()
      -- every device leaves LIVE once its server is gone: when each did,
      -- as one `list` a poll sees it, and the slowest `list`
      local want = recovery and "QUIESCED" or "DEAD"
      local left, slowest = {}, 0
      until_deadline(60, function()
        local t = G.now()
        local ok, out = G.sh("timeout 10 %s list --json", G.bin)
        slowest = math.max(slowest, G.now() - t)
        local rows = ok and json.decode(out) or {}
        local all = true
        for _, d in ipairs(devs) do
          for _, row in ipairs(rows) do
            if row.id == d.id and row.state == want and not left[d.id] then
              left[d.id] = G.now() - t_kill
            end
          end
          all = all and left[d.id] ~= nil
        end
        return all
      end)
      local t_settled, timeline = 0, {}
      for _, d in ipairs(devs) do
        timeline[#timeline + 1] = ("%s: %s"):format(d.what, left[d.id] and ("%.2f s"):format(left[d.id])
          or "never")
        t_settled = math.max(t_settled, left[d.id] or math.huge)
      end
      timeline = table.concat(timeline, "; ")
      if t_settled > SETTLE_S or slowest > 5 then
        error(("round %d: devices %s after their servers' kill: %s; slowest list %.2f s\n%s")
          :format(round, want, timeline, slowest, evidence(devs)))
      end
      for _, d in ipairs(devs) do
        assert.are.equal(recovery, listed(d.id).recoverable, d.what)
      end
      -- the control path answers: list, a new device, a recovery
      local t_list = G.now()
      local rc, out = cli("list")
      assert.are.equal(0, rc, out)
      t_list = G.now() - t_list
      local new_id = M.add("-t null -s 16MiB")
      G.must("timeout 10 dd if=/dev/ublkb%d of=/dev/null bs=64k count=16 iflag=direct status=none", new_id)
      if recovery then
        -- a different backend each round: the null, then the Lua one
        local d = devs[kind == 1 and 1 or 4]
        rc, out = cli("recover -n %d", d.id)
        assert.are.equal(0, rc, out)
        assert.are.equal("LIVE", listed(d.id).state)
      else
        -- the new server's start deleted what died without recovery: each
        -- goes once fio, failing, closes it
        assert.truthy(G.sh("timeout 30 sh -c 'for p in $(cat %s/fio.pids); do "
          .. "while kill -0 $p 2>/dev/null; do sleep 0.1; done; done'", DIR), "fio still running")
        for _, d in ipairs(devs) do
          -- (the new device may have been given a freed number)
          assert.truthy(d.id == new_id or until_deadline(10, function()
            return not G.sh("test -e /sys/class/ublk-char/ublkc%d", d.id)
          end), ("%s left DEAD after the next server's start:\n%s\n%s"):format(d.what,
            select(2, G.sh("timeout 10 %s list; ps -eo pid,ppid,stat,comm | grep -v ' S '", G.bin)),
            select(2, G.sh("tail -20 /run/ublk-lua/server.log"))))
        end
      end
      rc, out = G.sh("timeout 30 %s del -a", G.bin)
      assert.truthy(rc, out)
      -- fio fails what waited and ends
      assert.truthy(G.sh("timeout 30 sh -c 'for p in $(cat %s/fio.pids); do "
        .. "while kill -0 $p 2>/dev/null; do sleep 0.1; done; done'", DIR), "fio still running")
      G.must("rm -f %s/fio.pids", DIR)
      clean()
      print(("\n  round %d (recovery %s): %.1f s; %s after the kill: %s; slowest list %.2f s, "
        .. "list after %.2f s"):format(round, recovery and "on" or "off", G.now() - t0, want, timeline,
        slowest, t_list))
      ::next_round::
    end
    print(("\n  kill storm: %d rounds in %.1f s"):format(ROUNDS, G.now() - t_all))
  end)
end)
