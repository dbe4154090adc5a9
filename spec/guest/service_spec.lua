-- Under a service manager: what contrib/ublk-lua@.service runs, command for
-- command, since the guest has no systemd to run it.  ExecStart is a
-- foreground `ublk-lua SCRIPT` with $NOTIFY_SOCKET (Type=notify); after a
-- kill -9, Restart= runs the same command again, which must take back the
-- device the dead server left QUIESCED (same id, same data, the I/O that
-- waited completes) rather than add a new one beside it; a stop (SIGTERM)
-- removes it.
local G = require "guest"
local M = require "manage"

local SCRIPT = "/tmp/ublk-svc/disk.lua"
local SOCK = "/tmp/ublk-svc/notify.sock"

-- A stand-in for systemd's notify socket: every datagram to a file.
local function notify_listener()
  G.write_file("/tmp/ublk-svc/listen.py", ([[
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("%s")
open("%s.bound", "w").close()
while True:
    msg = s.recv(4096)
    with open("%s.log", "ab") as f:
        f.write(msg + b"\n")
]]):format(SOCK, SOCK, SOCK))
  local p = G.spawn("python3 /tmp/ublk-svc/listen.py", true)
  assert(G.sh("timeout 20 sh -c 'until [ -e %s.bound ]; do sleep 0.05; done'", SOCK),
    "no notify socket")
  return p
end

local function exec_start()
  return G.spawn(("NOTIFY_SOCKET=%s %s %s"):format(SOCK, G.bin, SCRIPT), true)
end

describe("#guest service", function()
  local procs = {}
  after_each(function()
    G.end_all(procs)
    M.reset()
    G.sh("rm -rf /tmp/ublk-svc")
  end)

  it("Restart= after kill -9: the same command takes its device back, the waiting I/O completes, every byte is there", function()
    G.must("mkdir -p /tmp/ublk-svc")
    G.write_file(SCRIPT, 'return { size = "64MiB", queues = 2 }\n')
    procs[#procs + 1] = notify_listener()
    local p = exec_start()
    procs[#procs + 1] = p
    local path = assert(p:wait_output("(/dev/ublkb%d+) ready", 60))
    local id = tonumber(path:match("%d+$"))
    local md5 = G.write_random_at(path, 0, 1048576)
    -- the unit's main process dies; a reader is then left waiting
    p:kill("KILL")
    assert.truthy(M.wait_until(function() return M.listed(id).state == "QUIESCED" end), "not QUIESCED")
    local reader = G.spawn(("dd if=%s bs=65536 count=16 iflag=direct status=none | md5sum"):format(path), true)
    procs[#procs + 1] = reader
    G.sh("sleep 0.5")
    assert.falsy(reader:exited(), "the read did not wait for the device")
    -- Restart=: the same ExecStart, as systemd runs it after RestartSec
    local t0 = G.now()
    local q = exec_start()
    procs[#procs + 1] = q
    local again = assert(q:wait_output("(/dev/ublkb%d+) ready", 60))
    local secs = G.now() - t0
    assert.are.equal(path, again)
    assert.matches("taking back device " .. id, q:out())
    assert.matches(path .. " ready %(.*, recovered%)", q:out())
    assert.are.same({ "/sys/block/ublkb" .. id, "/sys/class/ublk-char/ublkc" .. id }, G.leftovers())
    assert.are.equal(0, reader:wait(60))
    assert.are.equal(md5, reader:out():match("^(%x+)"))
    assert.are.equal(md5, G.md5_at(path, 0, 1048576))
    local d = M.listed(id)
    assert.are.equal("LIVE", d.state)
    assert.are.equal(q.pid, d.ublk_lua.pid)
    -- systemd heard READY=1 from the new main process too
    assert.truthy(M.wait_until(function()
      local ok, log = pcall(G.read_file, SOCK .. ".log")
      return ok and select(2, log:gsub("READY=1", "")) >= 2 and log:match("MAINPID=" .. q.pid)
    end, 10), "no READY=1 from the restarted server")
    print(("\n  kill -9 to serving again under the same ExecStart: %.2f s"):format(secs))
    -- systemctl stop: SIGTERM removes it
    q:kill("TERM")
    assert.are.equal(0, q:wait(60))
    assert.matches(path .. " removed %(SIGTERM%)", q:out())
    M.clean()
  end)

  it("a server of another script (or other arguments) does not take it", function()
    G.must("mkdir -p /tmp/ublk-svc")
    G.write_file(SCRIPT, 'local n = ... ; return { size = (n or "32") .. "MiB" }\n')
    local p, path = G.serve(SCRIPT)
    procs[#procs + 1] = p
    local id = tonumber(path:match("%d+$"))
    p:kill("KILL")
    assert.truthy(M.wait_until(function() return M.listed(id).state == "QUIESCED" end), "not QUIESCED")
    local q, other = G.serve(SCRIPT .. " 16")
    procs[#procs + 1] = q
    assert.are_not.equal(path, other)
    assert.are.equal("QUIESCED", M.listed(id).state)
    q:kill("TERM")
    assert.are.equal(0, q:wait(60))
    assert.are.equal(0, (M.cli("del -n %d", id)))
    M.clean()
  end)
end)
