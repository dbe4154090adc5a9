-- An NBD peer that stays connected and silent holds nothing for long:
-- `add` to a server that accepts and never answers ends at connect_timeout
-- with nothing left behind (no device, no record, no server process); on a
-- device whose server goes mute mid-run (SIGSTOP: its socket stays open)
-- a request fails at `timeout`, the server is used again once it answers,
-- and `del` of a device with a request pending finishes in seconds even
-- with the default 30 s timeout.  Small timeouts keep it to seconds.
local G = require "guest"
local M = require "manage"
local add, alive = M.add, M.alive

-- the CLI, bounded: without the timeouts these waits never ended, and a
-- spec that hangs tells less than one that fails
local function cli(fmt, ...)
  local ok, out, rc = G.sh("timeout 30 " .. G.bin .. " " .. fmt, ...)
  return rc, out, ok
end

local SOCK = "/tmp/ublk-nbd-mute.sock"
local URI = "nbd+unix:///?socket=" .. SOCK
local procs = {}

-- a process in the background, ended in after_each
local function spawn(cmd)
  local p = G.spawn(cmd, true)
  procs[#procs + 1] = p
  return p
end

local function script(path, body)
  G.write_file(path, body)
  return path
end

-- ublk-lua servers running: `--serve` processes the CLI started
local function servers()
  return select(2, G.sh("pgrep -f '[u]blk-lua --serve' || true"))
end

local function nbdkit_memory()
  os.remove(SOCK)
  local pidfile = "/tmp/ublk-nbd-mute.pid"
  os.remove(pidfile)
  G.must("nbdkit -U %s -P %s memory 64M", SOCK, pidfile)
  assert(M.wait_until(function() return G.sh("test -s %s", pidfile) end, 5), "nbdkit did not start")
  local pid = tonumber(G.read_file(pidfile))
  procs[#procs + 1] = { cleanup = function() G.sh("kill -CONT %d; kill -9 %d", pid, pid) end }
  return pid
end

describe("#guest nbd timeouts", function()
  setup(function()
    assert(G.sh("command -v nbdkit && command -v python3"), "nbdkit and python3 are needed")
  end)

  after_each(function()
    for _, p in ipairs(procs) do p:cleanup() end
    procs = {}
    os.remove(SOCK)
    M.reset()
  end)

  it("add to a server that accepts and never answers ends at connect_timeout, naming the URI, with nothing left", function()
    os.remove(SOCK)
    -- listening, never answering (G.spawn quotes its command in '')
    G.write_file("/tmp/ublk-nbd-mute.py", ("import socket, time\n"
      .. "s = socket.socket(socket.AF_UNIX)\ns.bind(%q)\ns.listen(8)\ntime.sleep(120)\n"):format(SOCK))
    spawn("python3 /tmp/ublk-nbd-mute.py")
    assert(M.wait_until(function() return G.sh("test -S %s", SOCK) end, 5), "no listener")
    local path = script("/tmp/ublk-nbd-mute.lua",
      ('return { backend = "nbd", uri = "%s", connect_timeout = 1 }\n'):format(URI))
    local before = servers()
    local t0 = G.now()
    local rc, out = cli("add %s", path)
    local took = G.now() - t0
    assert.are_not.equal(0, rc, out)
    assert.matches("cannot connect to '" .. URI:gsub("%p", "%%%0") .. "': no answer within 1000 ms %(connect_timeout%)", out)
    assert.truthy(took < 8, ("add took %.1f s"):format(took))
    assert.are.same({}, G.leftovers())
    assert.are.equal("", select(2, G.sh("ls /run/ublk-lua 2>/dev/null | grep -v server.log")))
    assert.are.equal(before, servers())
    print(("\n  add to a mute server refused in %.1f s"):format(took))
  end)

  it("a server gone mute mid-run fails requests at timeout, is used again once it answers, and del ends in seconds", function()
    local nbdkit = nbdkit_memory()
    -- timeout 2 s: a request waits that long, no more
    local path = script("/tmp/ublk-nbd-mute.lua",
      ('return { backend = "nbd", uri = "%s", timeout = 2 }\n'):format(URI))
    local id, pid = add(path)
    local dev = "/dev/ublkb" .. id
    local md5 = G.write_random_at(dev, 0, 65536)
    G.must("kill -STOP %d", nbdkit)
    local t0 = G.now()
    local ok = G.sh("timeout 20 dd if=%s of=/dev/null bs=4k count=1 skip=100 iflag=direct status=none", dev)
    local took = G.now() - t0
    assert.is_false(ok, "a read from a mute server succeeded")
    assert.truthy(took >= 1.5 and took < 8, ("the read failed after %.1f s"):format(took))
    print(("\n  a read from a mute server failed after %.1f s (timeout 2 s)"):format(took))
    assert.matches("no answer within 2000 ms %(timeout%)", G.read_file("/run/ublk-lua/server.log"))
    -- the server answers again: after the backoff, requests reach it
    G.must("kill -CONT %d", nbdkit)
    assert.truthy(M.wait_until(function()
      local ok, got = pcall(G.md5_at, dev, 0, 65536) -- EIO until the backoff has passed
      return ok and got == md5
    end, 10), "the server that answers again is not used")
    assert.truthy(alive(pid))
    assert.are.equal(0, (cli("del -n %d", id)))

    -- the default timeout (30 s): del with a read pending on a mute server
    id, pid = add(script("/tmp/ublk-nbd-mute.lua",
      ('return { backend = "nbd", uri = "%s" }\n'):format(URI)))
    dev = "/dev/ublkb" .. id
    G.must("kill -STOP %d", nbdkit)
    local reader = spawn(("dd if=%s of=/dev/null bs=4k count=1 iflag=direct"):format(dev))
    G.sh("sleep 0.5")
    t0 = G.now()
    local rc, out = cli("del -n %d", id)
    took = G.now() - t0
    assert.are.equal(0, rc, out)
    assert.truthy(took < 8, ("del took %.1f s"):format(took))
    print(("  del with a request pending on a mute server: %.1f s (timeout 30 s)"):format(took))
    assert.truthy(M.wait_until(function() return not alive(pid) end, 5), "the server is still there")
    assert.are_not.equal(0, reader:wait(10))
    assert.are.same({}, G.leftovers())
    assert.are.equal("", servers())
  end)
end)
