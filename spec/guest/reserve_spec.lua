-- A /dev/shm too small for what is asked is refused at `add` (a memory
-- device's store) or at ublk.shared() (a Lua backend's region kept for
-- recovery), naming the size asked and the space free, with nothing left
-- behind; what fits is reserved whole, so filling the rest of /dev/shm
-- afterwards cannot make a write fault: fio verify is clean and the server
-- never dies of SIGBUS (exit 135).  /dev/shm is a 100 MiB tmpfs here,
-- mounted over the guest's own and taken away after.
local G = require "guest"
local M = require "manage"
local cli, add, alive = M.cli, M.add, M.alive

local function shm_names()
  return select(2, G.sh("ls /dev/shm | grep ublk-lua"))
end

describe("#guest reserve", function()
  setup(function()
    G.must("mount -t tmpfs -o size=100M tmpfs /dev/shm")
  end)

  teardown(function()
    G.sh("%s del -a", G.bin)
    G.must("umount /dev/shm")
  end)

  after_each(function()
    G.sh("rm -f /dev/shm/filler")
    M.reset()
  end)

  it("a second 64 MiB store is refused at add naming the free space; the first, reserved, serves fio verify with /dev/shm full", function()
    local t0 = G.now()
    G.write_file("/tmp/ublk-reserve-buffer.lua",
      'return { backend = "memory", size = "64MiB", copy = "buffer" }\n')
    local id, pid = add("/tmp/ublk-reserve-buffer.lua")
    local before, records = shm_names(), select(2, G.sh("ls /run/ublk-lua"))
    local rc, out = cli("add -t memory -s 64MiB")
    assert.are_not.equal(0, rc, out)
    local free = out:match("64 MiB asked for, its file system has (%d+) MiB free")
    assert.truthy(free, out)
    assert.truthy(tonumber(free) < 64, out)
    -- nothing of the refused device: no block device, no record, no store
    assert.are.equal(2, #G.leftovers())
    assert.are.equal(before, shm_names())
    assert.are.equal(records, select(2, G.sh("ls /run/ublk-lua")))
    -- someone else takes what is left: the device's pages were its own
    G.sh("dd if=/dev/zero of=/dev/shm/filler bs=1M count=100 status=none")
    assert.truthy(G.sh("df -m /dev/shm | awk 'NR==2 { exit !($4 == 0) }'"), "/dev/shm not full")
    G.fio_verify("/dev/ublkb" .. id, 64)
    assert.truthy(alive(pid), "the server died: " .. G.must("tail -5 /run/ublk-lua/server.log"))
    assert.are.equal(0, (cli("del -n %d", id)))
    print(("\n  refused at add, then fio verify 64 MiB on a full /dev/shm: %.1f s"):format(G.now() - t0))
  end)

  it("a ublk.shared region too big for /dev/shm is refused by name; one that fits is reserved and serves fio verify", function()
    local rc, out = cli("add examples/luamem.lua 200MiB")
    assert.are_not.equal(0, rc, out)
    assert.matches("ublk.shared: ENOSPC: /dev/shm/ublk%-lua[^:]*: 200 MiB asked for, its file system has %d+ MiB free", out)
    assert.are.same({}, G.leftovers())
    assert.are.equal("", shm_names())
    local id, pid = add("examples/luamem.lua 32MiB")
    G.sh("dd if=/dev/zero of=/dev/shm/filler bs=1M count=100 status=none")
    G.fio_verify("/dev/ublkb" .. id, 32)
    assert.truthy(alive(pid), "the server died: " .. G.must("tail -5 /run/ublk-lua/server.log"))
    assert.are.equal(0, (cli("del -n %d", id)))
  end)
end)
