-- How a server ends: every termination signal removes its devices, a
-- closed stdout does not kill it, a script's own loop can be stopped, and
-- a script that cannot be stopped still loses its devices in bounded time.
local G = require "guest"
local ublk = require "ublk"
local stderr = require "stderr"

-- Seconds (wall clock, 10 ms resolution) for the process to exit.
local function timed_wait(p, timeout)
  local t0 = G.now()
  local rc = p:wait(timeout)
  return rc, G.now() - t0
end

local function gone(path)
  return not G.sh("test -e %s", path) and #G.leftovers() == 0
end

-- Every signal whose default action ends a process (SIGINT and SIGTERM:
-- spec/guest/cli_spec).  The eleven servers (16 MiB RAM disks) start at
-- once and each test ends its own: started one after another they took
-- 37 s of this file's 80 on 7.3 under TCG.
describe("#guest shutdown", function()
  local SIGNALS = { "HUP", "QUIT", "USR1", "USR2", "ALRM", "VTALRM", "PROF", "XCPU", "XFSZ", "IO",
    "PWR" }
  local servers = {}
  lazy_setup(function()
    for _, sig in ipairs(SIGNALS) do servers[sig] = { p = G.spawn("spec/guest/scripts/small-disk.lua") } end
    for _, sig in ipairs(SIGNALS) do
      local s = servers[sig]
      s.path, s.err = s.p:wait_output("(/dev/ublkb%d+) ready", 120)
    end
  end)
  lazy_teardown(function()
    local procs = {}
    for _, s in pairs(servers) do procs[#procs + 1] = s.p end
    G.end_all(procs)
  end)

  for _, sig in ipairs(SIGNALS) do
    it("removes the device on SIG" .. sig .. " and exits 0", function()
      local p, path = servers[sig].p, servers[sig].path
      assert(path, "ublk-lua did not become ready: " .. tostring(servers[sig].err))
      local md5 = G.write_random_at(path, 4096, 8192)
      assert.are.equal(md5, G.md5_at(path, 4096, 8192))
      p:kill(sig)
      assert.are.equal(0, p:wait(30))
      assert.matches(path .. " removed %(SIG" .. sig .. "%)", p:out())
      -- its block and char devices are gone (the other servers' stay)
      local id = path:match("%d+$")
      assert.is_false(G.sh("test -e %s || test -e /sys/block/ublkb%s || test -e /sys/class/ublk-char/ublkc%s",
        path, id, id))
    end)
  end
end)

describe("#guest shutdown", function()
  local procs = {}
  after_each(function() G.end_all(procs) end)

  it("keeps serving when its stdout is a closed pipe (SIGPIPE ignored)", function()
    local dir = G.must("mktemp -d"):gsub("%s+$", "")
    -- the reader of ublk-lua's stdout exits at once: the ready line hits EPIPE
    G.must("( (%s examples/mydisk.lua 2>%s/err & echo $! > %s/pid; wait $!; echo $? > %s/rc) | true ) "
      .. "> /dev/null 2>&1 &", G.bin, dir, dir, dir)
    G.must("timeout 60 sh -c 'until [ -e /sys/block/ublkb0 ] || ls /sys/block/ublkb* >/dev/null 2>&1; do sleep 0.05; done'")
    local path = "/dev/" .. G.must("ls /sys/block | grep ublkb | head -1"):gsub("%s+$", "")
    G.must("timeout 30 sh -c 'until [ -b %s ]; do sleep 0.05; done'", path)
    G.sh("sleep 0.5") -- past the ready line's write
    local md5 = G.write_random_at(path, 0, 65536)
    assert.are.equal(md5, G.md5_at(path, 0, 65536))
    local pid = tonumber(G.read_file(dir .. "/pid"))
    G.must("kill -TERM %d", pid)
    G.must("timeout 30 sh -c 'until [ -s %s/rc ]; do sleep 0.05; done'", dir)
    assert.are.equal("0", G.read_file(dir .. "/rc"):match("%d+"))
    assert.are.equal("", G.read_file(dir .. "/err"))
    assert.is_true(gone(path))
    G.sh("rm -rf %s", dir)
  end)

  it("stops a script that loops on ublk.wait_signal, at once", function()
    local p, path = G.serve("spec/guest/scripts/loop-wait.lua")
    procs[#procs + 1] = p
    p:kill("TERM")
    local rc, secs = timed_wait(p, 30)
    assert.are.equal(0, rc)
    assert.matches("loop saw SIGTERM", p:out())
    assert.matches(path .. " removed %(SIGTERM%)", p:out())
    assert.is_true(gone(path))
    print(("\n  loop with ublk.wait_signal: SIGTERM to exit %.2f s"):format(secs))
  end)

  it("interrupts a script busy in its own loop and removes its device", function()
    local p, path = G.serve("spec/guest/scripts/loop-busy.lua")
    procs[#procs + 1] = p
    p:kill("TERM")
    local rc, secs = timed_wait(p, 30)
    assert.are.equal(0, rc)
    assert.matches(path .. " removed %(SIGTERM%)", p:out())
    assert.is_true(gone(path))
    print(("\n  busy loop (interpreted): SIGTERM to exit %.2f s"):format(secs))
  end)

  it("removes the device of a script no hook can interrupt once the stop deadline passes", function()
    local p, path = G.serve("spec/guest/scripts/loop-jit.lua", "UBLK_STOP_TIMEOUT=1")
    procs[#procs + 1] = p
    local t0 = G.now()
    p:kill("TERM")
    local rc = p:wait(30)
    assert.are.equal(128 + 15, rc)
    assert.matches("not removed in time", p:err())
    -- the reaper deletes the device once the server has gone
    assert.truthy(G.sh("timeout 20 sh -c 'while [ -e %s ] || ls /sys/class/ublk-char/ublkc* >/dev/null 2>&1; do sleep 0.05; done'", path))
    print(("\n  JIT-compiled loop, UBLK_STOP_TIMEOUT=1: SIGTERM to device gone %.2f s"):format(G.now() - t0))
  end)

  it("fails a request whose handler loops past its budget, serves on, and stops cleanly", function()
    local p, path = G.serve("spec/guest/scripts/stuck-handler.lua call 1")
    procs[#procs + 1] = p
    local t0 = G.now()
    local ok = G.sh("dd if=%s of=/dev/null bs=512 skip=2048 count=1 iflag=direct status=none", path)
    local secs = G.now() - t0
    assert.is_false(ok, "the looping read succeeded")
    assert.truthy(secs < 20, secs)
    local md5 = G.write_random_at(path, 65536, 65536)
    assert.are.equal(md5, G.md5_at(path, 65536, 65536))
    p:kill("TERM")
    assert.are.equal(0, p:wait(30))
    assert.matches("over its time budget of 1000 ms", p:err())
    print(("\n  handler loop (hookable), budget 1 s: the read failed after %.2f s"):format(secs))
  end)

  it("removes the device of a handler stuck in machine code, in bounded time", function()
    local p, path = G.serve("spec/guest/scripts/stuck-handler.lua jit 1")
    procs[#procs + 1] = p
    local dir = G.must("mktemp -d"):gsub("%s+$", "")
    -- a reader that will wait for the stuck request
    G.must("(dd if=%s of=/dev/null bs=512 skip=2048 count=1 iflag=direct status=none; echo $? > %s/rc) "
      .. ">/dev/null 2>&1 &", path, dir)
    -- the watchdog calls the queue wedged a second after the budget
    assert.truthy(G.sh("timeout 20 sh -c 'until grep -q \"cannot be interrupted\" %s/err; do sleep 0.1; done'",
      p.dir), p:err())
    local t0 = G.now()
    p:kill("TERM")
    assert.are.equal(1, p:wait(30))
    assert.truthy(G.sh("timeout 20 sh -c 'while ls /sys/class/ublk-char/ublkc* >/dev/null 2>&1; do sleep 0.05; done'"))
    local secs = G.now() - t0
    -- the reader got its error, it is not left in D state
    assert.truthy(G.sh("timeout 20 sh -c 'until [ -s %s/rc ]; do sleep 0.05; done'", dir))
    assert.are_not.equal("0", G.read_file(dir .. "/rc"):match("%d+"))
    assert.matches("stuck in its backend", p:err())
    G.sh("rm -rf %s", dir)
    print(("\n  handler stuck in machine code: SIGTERM to device gone %.2f s"):format(secs))
  end)

  it("removes a mounted device without hanging, and says who holds it", function()
    local dev = assert(ublk.device{ size = "64MiB" })
    assert(dev:start())
    G.must("mkfs.ext4 -q %s && mkdir -p /tmp/ublk-held && mount %s /tmp/ublk-held", dev.path, dev.path)
    local t0 = G.now()
    local said = stderr.capture(function() assert(dev:close()) end)
    local secs = G.now() - t0
    assert.truthy(secs < 30, secs)
    assert.matches("is still mounted on /tmp/ublk%-held", said)
    assert.falsy(G.sh("test -e %s", dev.path))
    G.sh("umount /tmp/ublk-held") -- its number is freed once the mount lets go
    print(("\n  close of a mounted device: %.2f s"):format(secs))
  end)

  it("ends a CLI server on SIGINT while its disk is mounted, in bounded time, naming the holder", function()
    local p, path = G.serve("examples/mydisk.lua")
    procs[#procs + 1] = p
    G.must("mkfs.ext4 -q %s && mkdir -p /tmp/ublk-held-cli && mount %s /tmp/ublk-held-cli", path, path)
    local t0 = G.now()
    p:kill("INT")
    assert.are.equal(0, p:wait(60))
    local secs = G.now() - t0
    assert.truthy(secs < 30, secs)
    local said = p:out() .. p:err()
    assert.matches("is still mounted on /tmp/ublk%-held%-cli", said)
    assert.matches(path .. " removed %(SIGINT%)", said)
    assert.falsy(G.sh("test -e %s", path))
    G.sh("umount /tmp/ublk-held-cli") -- its number is freed once the mount lets go
    assert.same({}, G.leftovers())
    print(("\n  SIGINT to a server whose disk is mounted: %.2f s"):format(secs))
  end)

  it("removes the devices a killed server left without recovery, when the next one starts", function()
    local p, path = G.serve("spec/guest/scripts/no-recovery.lua")
    procs[#procs + 1] = p
    local id = path:match("%d+$")
    p:kill("KILL")
    p:wait(30)
    -- the kernel took the disk away; the device itself is left (DEAD)
    assert.truthy(G.sh("timeout 20 sh -c 'while [ -e %s ]; do sleep 0.05; done'", path))
    assert.truthy(G.sh("test -e /sys/class/ublk-char/ublkc%s", id))
    local q = G.serve("examples/null.lua")
    procs[#procs + 1] = q
    assert.matches("removing device " .. id .. ", left by a server that ended without removing it", q:err())
    q:kill("TERM")
    assert.are.equal(0, q:wait(30))
  end)

  it("removes the device when a script calls os.exit after starting it", function()
    local rc, out = G.run_cli("spec/guest/scripts/exit-early.lua")
    assert.are.equal(3, rc, out)
    assert.same({}, G.leftovers())
  end)

  it("says what a script raised, a table or nil included, and removes its device", function()
    local rc, out = G.run_cli("spec/guest/scripts/raise-table.lua")
    assert.are.equal(1, rc)
    assert.matches("ublk%-lua: a table with a message", out)
    assert.same({}, G.leftovers())
    rc, out = G.run_cli("spec/guest/scripts/raise-nil.lua")
    assert.are.equal(1, rc)
    assert.matches("ublk%-lua: the script raised an error with no message %(error%(nil%)%)", out)
    assert.same({}, G.leftovers())
  end)
end)
