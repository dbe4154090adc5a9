-- What can go stale is never trusted (issue 24): a dead server's pid
-- given to a new process (ns_last_pid, as the probe did) gets neither the
-- dead server's store nor its signals; a record cut short, too long or
-- naming a file that is not ours is read as what it is; two recoveries at
-- once tell the loser why.
local G = require "guest"
local M = require "manage"
local cli, add, listed, alive, wait_until, clean = M.cli, M.add, M.listed, M.alive, M.wait_until, M.clean

local NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"

-- Runs `cmd` (a shell command that starts one process of interest, whose
-- pid `pid_of(output)` finds) so that process gets pid `want`: the kernel
-- hands out ns_last_pid + 1 next, and the command may make a few threads
-- or processes first, so the offset is searched.  undo(output) ends a try
-- that missed.  Returns the output of the try that hit.
local function with_pid(want, cmd, pid_of, undo)
  for k = 1, 12 do
    local ok, out = G.sh("echo %d > %s && %s", want - k, NS_LAST_PID, cmd)
    local got = ok and pid_of(out)
    if got == want then return out end
    if ok then undo(out) end
  end
  error(("no process got pid %d"):format(want))
end

-- Kills device id's server (pid) with -9 and waits for it to be gone and
-- the device QUIESCED.
local function kill_server(id, pid)
  G.must("kill -9 %d", pid)
  assert.truthy(wait_until(function() return not alive(pid) end), "server still there")
  assert.truthy(wait_until(function() return listed(id).state == "QUIESCED" end), "not QUIESCED")
end

-- A device whose server was killed: id, pid.
local function dead_server(args)
  local id, pid = add(args)
  kill_server(id, pid)
  return id, pid
end

describe("#guest stale state", function()
  after_each(M.reset)

  it("a new server given a dead server's pid starts from an empty store; recover brings the dead one's data back", function()
    local t0 = G.now()
    local id, pid = add("-t memory -s 64MiB")
    local path = "/dev/ublkb" .. id
    local md5 = G.write_random_at(path, 1048576, 65536)
    kill_server(id, pid)
    local store = listed(id).ublk_lua.store
    assert.truthy(store and G.sh("test -e %s", store), "the dead server's store is kept")
    -- a new device, same size, whose server gets the dead server's pid
    local new = with_pid(pid, G.bin .. " add -t memory -s 64MiB",
      function(o) return tonumber(o:match("dev id %d+: .-, pid (%d+)")) end,
      function(o) G.sh("%s del -n %s", G.bin, o:match("dev id (%d+)")) end)
    local id2 = tonumber(new:match("dev id (%d+)"))
    local zeros = G.must("head -c 65536 /dev/zero | md5sum"):match("^(%x+)")
    assert.are.equal(zeros, G.md5_at("/dev/ublkb" .. id2, 1048576, 65536),
      "the new device serves the dead server's data")
    assert.not_matches("%." .. pid .. "%.", store, 1, false, "a store named by its pid")
    assert.are.equal(0, (cli("del -n %d", id2)))
    assert.truthy(G.sh("test -e %s", store), "the new server's end removed the dead one's store")
    local rc, out = cli("recover -n %d", id)
    assert.are.equal(0, rc, out)
    assert.are.equal(md5, G.md5_at(path, 1048576, 65536))
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
    print(("\n  pid reuse, store: %.1f s"):format(G.now() - t0))
  end)

  it("reload, list and del never take a process given a dead server's pid for the server", function()
    local t0 = G.now()
    local id, pid = dead_server("-t memory -s 16MiB")
    local out = with_pid(pid, "sleep 60 > /dev/null 2>&1 & echo $!",
      function(o) return tonumber(o:match("(%d+)")) end,
      function(o) G.sh("kill -9 %s", o:match("(%d+)")) end)
    local sleeper = tonumber(out:match("(%d+)"))
    assert.are.equal("dead", listed(id).ublk_lua.server)
    local rc, said = cli("reload -n %d", id)
    assert.are.equal(1, rc, said)
    assert.matches("device " .. id .. " has no running ublk%-lua server to reload", said)
    assert.is_true(alive(sleeper), "reload signalled the process that got the server's pid")
    rc, said = cli("recover -n %d", id)
    assert.are.equal(0, rc, said)
    rc, said = cli("del -n %d", id)
    assert.are.equal(0, rc, said)
    assert.is_true(alive(sleeper), "del signalled the process that got the server's pid")
    G.sh("kill -9 %d", sleeper)
    clean()
    print(("\n  pid reuse, signals: %.1f s"):format(G.now() - t0))
  end)

  it("del -a ends the server of a LIVE device whose record is cut short, store and all", function()
    local id, pid = add("-t memory -s 16MiB")
    local store = listed(id).ublk_lua.store
    G.must("truncate -s 20 /run/ublk-lua/dev%d", id)
    local rc, out = cli("list -n %d", id)
    assert.are.equal(0, rc, out)
    assert.matches("unreadable record .*: ublk%-lua del %-n " .. id .. " removes it", out)
    rc, out = cli("del -a")
    assert.are.equal(0, rc, out)
    assert.truthy(wait_until(function() return not alive(pid) end, 10), "its server runs on")
    assert.is_false(G.sh("test -e %s", store), "its store was kept")
    clean()
  end)

  it("del removes the store of a device whose record holds ~4 KiB of arguments", function()
    local id = add("examples/mydisk.lua " .. ("a"):rep(4200))
    local rc, out = cli("del -n %d", id)
    assert.are.equal(0, rc, out)
    clean()
  end)

  it("del -a removes records that do not parse, and no file a record names that is not ours", function()
    G.must("mkdir -p /run/ublk-lua; echo keep > /tmp/ublk-victim")
    G.write_file("/run/ublk-lua/dev4000", '{"id": 4000, "pid": 999999, "store": "/tmp/ublk-victim", '
      .. '"shared": ["/tmp/ublk-victim"]}\n')
    G.write_file("/run/ublk-lua/dev4001", "not json")
    local rc, out = cli("del -a")
    assert.are.equal(0, rc, out)
    assert.matches("dev id 4001: already gone; its unreadable record removed", out)
    assert.are.equal("keep\n", G.read_file("/tmp/ublk-victim"))
    rc, out = cli("del -a")
    assert.are.equal(0, rc, out)
    G.sh("rm -f /tmp/ublk-victim")
    clean()
  end)

  it("a recovery meeting one under way names it instead of a bare EBUSY", function()
    local id = dead_server("-t memory -s 16MiB")
    -- a recovery under way holds a POSIX lock on devN.recovering
    -- (runtime/device/device_recover.c); this one holds it for the spec's while
    G.write_file("/tmp/ublk-lock.py", "import fcntl, sys, time\n"
      .. "f = open(sys.argv[1], 'w')\nfcntl.lockf(f, fcntl.LOCK_EX)\n"
      .. "print('locked', flush=True)\ntime.sleep(30)\n")
    local holder = G.spawn(("python3 /tmp/ublk-lock.py /run/ublk-lua/dev%d.recovering"):format(id), true)
    assert.truthy(holder:wait_output("locked", 20))
    local rc, said = cli("recover -n %d", id)
    holder:cleanup()
    G.sh("rm -f /tmp/ublk-lock.py")
    assert.are.equal(1, rc, said)
    assert.matches("device " .. id .. ": another server %(pid %d+%) is recovering it: wait for it "
      .. "to finish", said)
    rc, said = cli("recover -n %d", id)
    assert.are.equal(0, rc, said)
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)

  it("of two recoveries at once, the loser is told another is under way", function()
    local id = dead_server("-t memory -s 16MiB")
    local a, b = G.spawn("recover -n " .. id), G.spawn("recover -n " .. id)
    local ra, rb = a:wait(60), b:wait(60)
    local loser = ra == 0 and b or a
    local said = loser:err()
    a:cleanup()
    b:cleanup()
    assert.are.same({ 0, 1 }, { math.min(ra, rb), math.max(ra, rb) }, said)
    print("\n  loser: " .. said:gsub("\n$", ""))
    assert.truthy(said:match("another server %(pid %d+%) is recovering it")
      or said:match("device " .. id .. " is LIVE, served by pid %d+"), said)
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)
end)
