-- Power-cut testing end to end (docs/crash-testing.md): ext4 on a recorded
-- device under a workload that writes files, fsyncs them and marks each in
-- the log once fsync has returned ("NAME MD5"); then `ublk-lua crashtest`
-- rebuilds every FLUSH boundary and seeded samples within epochs, and
-- spec/guest/scripts/crash-check.sh checks each: e2fsck -fn clean after
-- the journal's replay, every file reported durable intact.  On an honest
-- disk every state passes; on a disk that lies about flushes
-- (ublk.lying{} over the recorder) the tool finds a failing state, and the
-- line it prints fails again, and --bisect names the earliest epoch that
-- fails.  SQLite (WAL) on the same ext4: with synchronous=FULL every commit
-- it reported survives every state; with synchronous=OFF the tool finds
-- one lost.  XFS (320 MiB, its smallest) under the same fsync workload
-- passes xfs_repair -n in every state.
local G = require "guest"
local ublk = require "ublk"

local dir = "/tmp/ublk-crash"
local mnt = dir .. "/mnt"
local CHECK = "sh spec/guest/scripts/crash-check.sh {dev} {marks}"
local SIZE = 32 * 1024 * 1024

local function clock() return ublk.clock() end

-- base.img: a fresh ext4; work.img: the copy the device changes
local function setup()
  G.must("rm -rf %s && mkdir -p %s", dir, mnt)
  G.must("truncate -s %d %s/base.img && mkfs.ext4 -q -F %s/base.img", SIZE, dir, dir)
  G.must("cp %s/base.img %s/work.img", dir, dir)
end

-- the same for XFS, at the smallest size mkfs.xfs makes
local XFS_SIZE = 320 * 1024 * 1024
local function setup_xfs()
  G.must("rm -rf %s && mkdir -p %s", dir, mnt)
  G.must("truncate -s %d %s/base.img && mkfs.xfs -q -f %s/base.img", XFS_SIZE, dir, dir)
  G.must("cp --sparse=always %s/base.img %s/work.img", dir, dir)
end

-- n files of 24 KiB, each fsynced (with its directory) and then marked;
-- between them a file nobody syncs, so epochs hold writes that may be lost
local function workload(dev, n)
  G.must("mount %s %s", dev.path, mnt)
  for i = 1, n do
    local name = ("f%d"):format(i)
    G.must("head -c 24576 /dev/urandom > %s/%s && sync %s/%s %s", mnt, name, mnt, name, mnt)
    local sum = G.must("md5sum < %s/%s", mnt, name):match("^(%x+)")
    assert(dev:mark(name .. " " .. sum))
    G.must("head -c 8192 /dev/urandom > %s/noise%d", mnt, i)
  end
  G.must("umount %s", mnt)
end

-- SQLite in WAL mode, n one-row commits at `sync` (FULL or OFF), each
-- marked with its number once sqlite3 has returned (0: the table)
local function sqlite_workload(dev, sync, n)
  G.must("mount %s %s", dev.path, mnt)
  G.must("sqlite3 %s/db 'PRAGMA journal_mode=WAL; CREATE TABLE t(i INTEGER PRIMARY KEY, v BLOB);'", mnt)
  assert(dev:mark("0"))
  for i = 1, n do
    G.must([[sqlite3 %s/db "PRAGMA synchronous=%s; INSERT INTO t VALUES(%d, randomblob(3000));"]],
      mnt, sync, i)
    assert(dev:mark(tostring(i)))
  end
  G.must("umount %s", mnt)
end

-- Records work(dev) on a file device over work.img (wrap: a policy over
-- the recorder, as ublk.lying), then runs crashtest on its log with
-- `check`, printing the times and the failing lines.  -> { ok, out, log,
-- states }
local function record_and_crashtest(what, size, work, check, extra, wrap)
  local log = ("%s/%s.log"):format(dir, what:gsub("%W", "-"))
  local backend = ublk.record{ base = ublk.file{ path = dir .. "/work.img" }, log = log }
  local dev = G.device{ size = size, recovery = false, backend = wrap and wrap{ base = backend } or backend }
  local t0 = clock()
  work(dev)
  dev:close()
  local t1 = clock()
  local ok, out = G.sh("%s crashtest %s --base %s/base.img --check '%s' --dir %s %s", G.bin, log, dir,
    check, dir, extra)
  local states = select(2, out:gsub("\nstate ", "")) + (out:match("^state ") and 1 or 0)
  print(("# crash: %s: workload %.1f s, %d states checked in %.1f s"):format(what, t1 - t0, states,
    clock() - t1))
  for line in out:gmatch("[^\n]+") do
    if line:match("FAIL") or line:match("^%a+%-check") or line:match("^bisect") then print("#   " .. line) end
  end
  return { ok = ok, out = out, log = log, states = states }
end

-- The line a failing run printed to check its state again fails again;
-- -> that line
local function fails_again(out)
  local again = assert(out:match("check it again with:\n(ublk%-lua crashtest [^\n]+)"), out)
  local ok, out2 = G.sh("%s%s --dir %s", G.bin, again:sub(#"ublk-lua" + 1), dir)
  assert.is_false(ok, out2)
  assert.matches("FAIL", out2)
  return again
end

describe("#guest power-cut testing", function()
  after_each(function()
    G.sh("umount %s", mnt)
    G.close_all()
    assert.are.same({}, G.leftovers())
    G.sh("rm -rf %s", dir)
  end)

  it("add --record and mark -n: a replay to the mark holds the bytes the device held then", function()
    G.must("rm -rf %s && mkdir -p %s", dir, dir)
    local log = dir .. "/cli.log"
    local id = tonumber(G.must("%s add -t memory -s 16MiB -r false --record %s", G.bin, log)
      :match("dev id (%d+):"))
    local path = "/dev/ublkb" .. id
    G.must("dd if=/dev/urandom of=%s bs=64k count=64 oflag=direct status=none", path)
    local live = G.must("dd if=%s bs=1M count=4 iflag=direct status=none | md5sum", path)
    G.must("%s mark -n %d written", G.bin, id)
    G.must("dd if=/dev/zero of=%s bs=64k count=16 oflag=direct status=none", path)
    G.must("%s del -n %d", G.bin, id)
    G.must("%s replay %s --to written -o %s/at-mark.img", G.bin, log, dir)
    assert.are.equal(live, G.must("head -c 4194304 %s/at-mark.img | md5sum", dir))
    local ok, out = G.sh("%s mark -n %d nope", G.bin, id)
    assert.is_false(ok, out)
  end)

  -- the recorder over a C backend, and over a Lua backend (its C side
  -- logs each request before the handler sees it)
  local function lua_over_memory()
    local mem = ublk.memory()
    return ublk.backend{ size = "32MiB", flush = function(_, req) return mem:flush(req) end,
      read = function(_, req) return mem:read(req) end,
      write = function(_, req) return mem:write(req) end }
  end
  for _, case in ipairs({ { "memory", ublk.memory }, { "a Lua backend", lua_over_memory } }) do
    it("under fio verify, a replay to the last entry is the live device, byte for byte ("
        .. case[1] .. ")", function()
      G.must("rm -rf %s && mkdir -p %s", dir, dir)
      local log = dir .. "/fio.log"
      local dev = G.device{ size = "32MiB", recovery = false, queues = 2,
        backend = ublk.record{ base = case[2](), log = log } }
      G.fio_verify(dev.path, 32, "--fsync=8")
      G.must("dd if=%s of=%s/live.img bs=1M iflag=direct status=none", dev.path, dir)
      local l = require("ublk.crash").read(log)
      local flushes = 0
      for _, e in ipairs(l.entries) do if e.type == "flush" then flushes = flushes + 1 end end
      assert.is_true(flushes > 0, "no flush reached the log")
      G.must("%s replay %s --to %d -o %s/replay.img", G.bin, log, #l.entries, dir)
      G.must("cmp %s/live.img %s/replay.img", dir, dir)
      print(("\n  fio verify through the recorder over %s: %d entries (%d flushes), the replay"
        .. " equal"):format(case[1], #l.entries, flushes))
      dev:close()
    end)
  end

  it("a recorded device killed with -9 and recovered goes on in the same log", function()
    G.must("rm -rf %s && mkdir -p %s", dir, dir)
    local log = dir .. "/recovered.log"
    local out = G.must("%s add -t memory -s 16MiB --record %s", G.bin, log)
    local id, pid = out:match("dev id (%d+):.-, pid (%d+)")
    id = tonumber(id)
    local path = "/dev/ublkb" .. id
    local a = G.write_random_at(path, 0, 1048576)
    G.must("%s mark -n %d a", G.bin, id)
    G.must("kill -9 %s", pid)
    local M = require "manage"
    assert.truthy(M.wait_until(function() return M.listed(id).state == "QUIESCED" end),
      "not QUIESCED")
    out = G.must("%s recover -n %d", G.bin, id)
    assert.matches("recovered", out)
    -- the base's data came back with the device (its store), and the log
    -- goes on: a write after the takeover is in it, after the mark
    assert.are.equal(a, G.md5_at(path, 0, 1048576))
    local b = G.write_random_at(path, 1048576, 1048576)
    G.must("%s mark -n %d b", G.bin, id)
    G.must("%s del -n %d", G.bin, id)
    G.must("%s replay %s --to b -o %s/at-b.img", G.bin, log, dir)
    assert.are.equal(a, G.must("head -c 1048576 %s/at-b.img | md5sum", dir):match("^(%x+)"))
    assert.are.equal(b, G.must("tail -c +1048577 %s/at-b.img | head -c 1048576 | md5sum", dir)
      :match("^(%x+)"))
    G.must("%s replay %s --to a -o %s/at-a.img", G.bin, log, dir)
    assert.are.equal(a, G.must("head -c 1048576 %s/at-a.img | md5sum", dir):match("^(%x+)"))
    assert.are_not.equal(b, G.must("tail -c +1048577 %s/at-a.img | head -c 1048576 | md5sum",
      dir):match("^(%x+)"))
  end)

  it("a recorded device reloaded goes on in the same log: the old server lets go at the hand-over", function()
    G.must("rm -rf %s && mkdir -p %s", dir, dir)
    local log = dir .. "/reloaded.log"
    local id = tonumber(G.must("%s add -t memory -s 16MiB --record %s", G.bin, log):match("dev id (%d+):"))
    local path = "/dev/ublkb" .. id
    local a = G.write_random_at(path, 0, 1048576)
    G.must("%s mark -n %d a", G.bin, id)
    assert.matches("reloaded", G.must("%s reload -n %d", G.bin, id))
    local b = G.write_random_at(path, 1048576, 1048576)
    G.must("%s mark -n %d b", G.bin, id)
    G.must("%s del -n %d", G.bin, id)
    local l = require("ublk.crash").read(log)
    assert.are.same({ 0, false }, { l.ignored, l.torn })
    G.must("%s replay %s --to b -o %s/at-b.img", G.bin, log, dir)
    assert.are.equal(a, G.must("head -c 1048576 %s/at-b.img | md5sum", dir):match("^(%x+)"))
    assert.are.equal(b, G.must("tail -c +1048577 %s/at-b.img | head -c 1048576 | md5sum", dir)
      :match("^(%x+)"))
  end)

  it("a log whose file system fills: writes fail with EIO and one log line, the server lives, the device goes", function()
    G.must("rm -rf %s && mkdir -p %s/small && mount -t tmpfs -o size=24M none %s/small", dir, dir, dir)
    local out = G.must("%s add -t memory -s 64MiB -r false --record %s/small/full.log", G.bin, dir)
    local id, pid = out:match("dev id (%d+):.-, pid (%d+)")
    local ok, dd = G.sh("dd if=/dev/urandom of=/dev/ublkb%s bs=1M count=40 oflag=direct status=none", id)
    assert.is_false(ok, "40 MiB fit in a log on 24 MiB")
    assert.matches("[Ii]nput/output error", dd)
    assert.is_true(G.sh("kill -0 %s", pid), "the server died")
    local said = select(2, G.read_file("/run/ublk-lua/server.log"):gsub("cannot grow the log", ""))
    assert.are.equal(1, said)
    G.must("%s del -n %s", G.bin, id)
    -- what was logged before it filled reads whole
    local l = assert(require("ublk.crash").read(dir .. "/small/full.log"))
    assert.is_true(#l.entries > 0)
    G.must("umount %s/small", dir)
  end)

  it("ext4 on an honest disk: every crash state passes e2fsck and keeps every durable file", function()
    setup()
    local r = record_and_crashtest("honest ext4", SIZE, function(dev) workload(dev, 4) end, CHECK,
      "--seed 7 --states 8 --jobs 2")
    assert(r.ok, r.out)
    assert.matches("crashtest: %d+ states of .* pass", r.out)
    -- the FLUSH boundaries are there: ext4's fsyncs reached the log
    assert.is_true(r.states >= 4 + 8, r.out)
    -- and the last state is the disk as the device left it
    G.must("%s replay %s --to %d -o %s/end.img --base %s/base.img", G.bin, r.log,
      #require("ublk.crash").read(r.log).entries, dir, dir)
    G.must("cmp %s/end.img %s/work.img", dir, dir)
  end)

  it("ext4 on a disk that lies about flushes: a failing state is found and fails again", function()
    setup()
    local r = record_and_crashtest("lying ext4", SIZE, function(dev) workload(dev, 4) end, CHECK,
      "--seed 1 --states 30 --bisect --jobs 2", ublk.lying)
    assert.is_false(r.ok, r.out)
    assert.matches("%-%-state [rt]%d+%-%d+", fails_again(r.out)) -- a sample, not a FLUSH boundary
    assert.matches("bisect: the earliest failing epoch is %d+ of %d+: state [rt]%d+%-%d+", r.out)
  end)

  for _, case in ipairs({ { "FULL", true }, { "OFF", false } }) do
    local sync, holds = case[1], case[2]
    it(("SQLite (WAL) with synchronous=%s: %s"):format(sync, holds
        and "every commit it reported survives every crash state"
        or "a state that lost a reported commit is found, and fails again"), function()
      setup()
      local r = record_and_crashtest("SQLite synchronous=" .. sync, SIZE,
        function(dev) sqlite_workload(dev, sync, 2) end,
        "sh spec/guest/scripts/sqlite-check.sh {dev} {marks}", "--seed 3 --states 4 --jobs 2")
      if holds then
        assert(r.ok, r.out)
        assert.matches("crashtest: %d+ states of .* pass", r.out)
      else
        assert.is_false(r.ok, r.out)
        -- a commit lost, or the database torn by a checkpoint nobody synced
        assert.matches("sqlite%-check: ", r.out)
        fails_again(r.out)
      end
    end)
  end

  it("XFS on an honest disk: every crash state passes xfs_repair -n and keeps every durable file", function()
    setup_xfs()
    local r = record_and_crashtest("honest XFS", XFS_SIZE, function(dev) workload(dev, 3) end,
      "sh spec/guest/scripts/xfs-check.sh {dev} {marks}", "--seed 5 --states 4 --jobs 2")
    assert(r.ok, r.out)
    assert.matches("crashtest: %d+ states of .* pass", r.out)
    assert.is_true(r.states >= 3 + 4, r.out) -- a FLUSH boundary an fsync at least
  end)
end)
