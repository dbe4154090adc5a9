-- The nbd backend against real NBD servers: nbdkit inside the guest, on
-- loopback TCP and on unix sockets.  Data is checked by bytes (fio's
-- crc32c, md5 of what was written, the exports read back with nbdcopy);
-- flush and discard are seen arriving in nbdkit's log; errors come from
-- nbdkit's error filter and from killing it.
local ublk = require "ublk"
local G = require "guest"
local stderr = require "stderr"

local servers = {}

-- nbdkit ARGS as a daemon; returns its pid.  Stopped in after_each.
local function nbdkit(args)
  local pidfile = os.tmpname()
  os.remove(pidfile)
  G.must("nbdkit -P %s %s", pidfile, args)
  local pid
  for _ = 1, 100 do
    local f = io.open(pidfile)
    pid = f and tonumber(f:read("*a"))
    if f then f:close() end
    if pid then break end
    G.sh("sleep 0.05")
  end
  assert(pid, "nbdkit wrote no pid file: " .. args)
  servers[#servers + 1] = pid
  os.remove(pidfile)
  return pid
end

local function unix_server(name, args)
  local sock = "/tmp/ublk-nbd-" .. name .. ".sock"
  os.remove(sock)
  local pid = nbdkit(("-U %s %s"):format(sock, args))
  return "nbd+unix:///?socket=" .. sock, pid, sock
end

local fio_verify = G.fio_verify

-- md5 of `len` bytes at the start of an export, read with nbdcopy
local function export_md5(uri, len)
  G.must("nbdcopy '%s' /tmp/ublk-nbd-export.img", uri)
  local md5 = G.must("head -c %d /tmp/ublk-nbd-export.img | md5sum", len):match("%x+")
  os.remove("/tmp/ublk-nbd-export.img")
  return md5
end

describe("#guest nbd backend", function()
  setup(function()
    G.sh("ip link set lo up")
    assert(G.sh("command -v nbdkit && command -v nbdcopy"),
      "nbdkit and nbdcopy (libnbd-bin) are needed: spec/harness/deps installs them")
  end)

  after_each(function()
    G.sh("umount /tmp/ublk-nbd-mnt")
    ublk.close_all()
    for _, pid in ipairs(servers) do G.sh("kill -9 %d", pid) end
    servers = {}
    assert.are.same({}, G.leftovers())
  end)

  it("refuses a URI with nothing listening in one line, before any device", function()
    local ok, dev, err = pcall(ublk.device, { backend = "nbd",
      uri = "nbd://127.0.0.1:10999/none" })
    assert.is_true(ok, tostring(dev))
    assert.is_nil(dev)
    assert.matches("^ECONNREFUSED: backend 'nbd': cannot connect to 'nbd://127%.0%.0%.1:10999/none'", err)
    assert.is_nil(err:find("\n"))
    assert.are.same({}, G.leftovers())
    -- the command line says the same, in one line, and exits
    G.write_file("/tmp/ublk-nbd-none.lua",
      "return { backend = 'nbd', uri = 'nbd://127.0.0.1:10999/x' }")
    local rc, out = G.run_cli("/tmp/ublk-nbd-none.lua")
    assert.are_not.equal(0, rc)
    assert.matches("cannot connect to 'nbd://127%.0%.0%.1:10999/x'", out)
    assert.are.equal(1, select(2, out:gsub("\n", "")), out)
    assert.are.same({}, G.leftovers())
  end)

  it("serves in the background with ublk-lua add -t nbd --uri, bytes intact", function()
    local uri = unix_server("add", "memory 32M")
    local ok, out = G.sh("%s add -t nbd --uri '%s' -q 2", G.bin, uri)
    assert(ok, out)
    local id = assert(tonumber(out:match("dev id (%d+): /dev/ublkb%d+ 32 MiB, 2 queues x 128, nbd")), out)
    local path = "/dev/ublkb" .. id
    local md5 = G.write_random_at(path, 65536, 1048576)
    assert.are.equal(md5, G.md5_at(path, 65536, 1048576))
    -- and it is on the server: the export read directly matches the disk
    assert.are.equal(G.md5_at(path, 0, 65536 + 1048576), export_md5(uri, 65536 + 1048576))
    ok, out = G.sh("%s del -n %d", G.bin, id)
    assert(ok, out)
  end)

  it("passes fio crc32c verify over TCP and over a unix socket, 2 queues", function()
    nbdkit("-i 127.0.0.1 -p 10810 memory 256M")
    local uri = unix_server("fio", "memory 256M")
    for _, u in ipairs({ "nbd://127.0.0.1:10810/", uri }) do
      local dev = G.device{ backend = "nbd", uri = u, queues = 2, depth = 64 }
      assert.are.equal(256 * 1024 * 1024, dev:info().size)
      fio_verify(dev.path, 64)
      local s = dev:stats()
      assert.truthy(s[1].writes > 0 and s[2].writes > 0, "both queues served")
      assert.are.equal(0, s.total.errors)
      dev:close()
    end
  end)

  it("gives a server without multi-conn one connection and one queue, and says so", function()
    local uri = unix_server("single", "--filter=multi-conn memory 64M multi-conn-mode=disable")
    local dev = G.device{ backend = "nbd", uri = uri, queues = 2 }
    local info = dev:info()
    assert.are.equal(1, info.queues)
    assert.matches("no multi%-conn", info.note)
    local md5 = G.write_random_at(dev.path, 4096, 256 * 1024)
    assert.are.equal(md5, G.md5_at(dev.path, 4096, 256 * 1024))
  end)

  it("keeps ext4 intact; flush and discard reach the server", function()
    local log = "/tmp/ublk-nbd-log.txt"
    os.remove(log)
    local uri = unix_server("fs", "--filter=log memory 256M logfile=" .. log)
    local dev = G.device{ backend = ublk.nbd{ uri = uri }, queues = 2 }
    local mnt = "/tmp/ublk-nbd-mnt"
    G.must("mkfs.ext4 -q -F %s", dev.path)
    G.must("mkdir -p %s && mount %s %s", mnt, dev.path, mnt)
    G.must("cp -a /usr/share/lua %s/tree", mnt)
    local sums = "cd %s && find . -type f | LC_ALL=C sort | xargs -d '\\n' md5sum"
    local before = G.must(sums, "/usr/share/lua")
    G.must("sync && fstrim %s", mnt)
    G.must("umount %s", mnt)
    local ok, out = G.sh("e2fsck -fn %s", dev.path)
    assert(ok, "e2fsck found problems:\n" .. out)
    G.must("echo 3 > /proc/sys/vm/drop_caches")
    G.must("mount %s %s", dev.path, mnt)
    assert.are.equal(before, G.must(sums, mnt .. "/tree"))
    G.must("umount %s", mnt)
    local text = G.read_file(log)
    assert.matches("Flush", text)
    assert.matches("Trim", text)
    local s = dev:stats().total
    assert.truthy(s.flushes > 0 and s.discards > 0)
  end)

  it("returns the server's errors as errors (nbdkit's error filter)", function()
    local trigger = "/tmp/ublk-nbd-fail"
    os.remove(trigger)
    local uri = unix_server("err", "--filter=error memory 64M error-pwrite=ENOSPC "
      .. "error-pwrite-rate=100% error-pwrite-file=" .. trigger
      .. " error-pread=EIO error-pread-rate=100% error-pread-file=" .. trigger)
    local dev = G.device{ backend = "nbd", uri = uri }
    local md5 = G.write_random_at(dev.path, 0, 65536)
    G.must("touch %s", trigger)
    local ok, out = G.sh("dd if=/dev/zero of=%s bs=4k count=1 oflag=direct status=none",
      dev.path)
    assert.is_false(ok)
    assert.matches("No space left on device", out)
    ok, out = G.sh("dd if=%s of=/dev/null bs=4k count=1 iflag=direct status=none", dev.path)
    assert.is_false(ok)
    assert.matches("Input/output error", out)
    assert.truthy(dev:stats().total.errors >= 2)
    os.remove(trigger)
    assert.are.equal(md5, G.md5_at(dev.path, 0, 65536))
  end)

  it("fails fio promptly when nbdkit dies under it; the device is still removable", function()
    -- the server's death is logged (once per queue): expected here
    local said = stderr.capture(function()
      local uri, pid = unix_server("kill", "memory 256M")
      local dev = G.device{ backend = "nbd", uri = uri, queues = 2, depth = 64 }
      local p = G.spawn(("fio --name=kill --filename=%s --ioengine=io_uring --direct=1 "
        .. "--rw=randrw --bs=64k --iodepth=32 --numjobs=2 --time_based --runtime=60 "
        .. "--output=/tmp/fio-nbd-kill.txt"):format(dev.path), true)
      G.sh("sleep 2")
      local t0 = G.now()
      G.must("kill -9 %d", pid)
      assert.are_not.equal(0, p:wait(30), "fio should have seen I/O errors")
      local secs = G.now() - t0
      print(("\n  nbdkit killed under fio: fio ended %.2f s later"):format(secs))
      p:cleanup()
      assert.truthy(dev:stats().total.errors > 0)
      -- later requests fail at once too
      local ok, out = G.sh("timeout 10 dd if=%s of=/dev/null bs=4k count=1 iflag=direct", dev.path)
      assert.is_false(ok)
      assert.matches("Input/output error", out)
      local t1 = G.now()
      assert(dev:close())
      assert.truthy(G.now() - t1 < 10)
    end)
    assert.matches("lost the NBD connection", said)
    assert.matches("requests fail with EIO", said, 1, true)
  end)

  it("with reconnect, rides out a server restart: waiting requests are sent again", function()
    -- the server's death is logged (once per queue): expected here
    local said = stderr.capture(function()
      local img = "/tmp/ublk-nbd-reconnect.img"
      G.must("truncate -s 64M %s", img)
      local uri, pid = unix_server("re", "file " .. img)
      local dev = G.device{ backend = "nbd", uri = uri, reconnect = 20, queues = 2 }
      local len = 1024 * 1024
      local md5 = G.write_random_at(dev.path, 0, len)
      G.must("kill -9 %d", pid)
      G.must("echo 3 > /proc/sys/vm/drop_caches")
      local p = G.spawn(("dd if=%s bs=64k count=16 iflag=direct status=none | md5sum"):format(dev.path),
        true)
      G.sh("sleep 1")
      assert.is_false(p:exited(), "the read should wait for the server")
      unix_server("re", "file " .. img)
      assert.are.equal(0, p:wait(30))
      assert.are.equal(md5, p:out():match("%x+"))
      p:cleanup()
      assert.are.equal(0, dev:stats().total.errors)
      dev:close()
      os.remove(img)
    end)
    assert.matches("lost the NBD connection", said)
    assert.matches("reconnecting", said, 1, true)
  end)

  it("mirrors to two servers (examples/mirror-nbd.lua) and reads on when one dies", function()
    -- the server's death is logged (once per queue): expected here
    local said = stderr.capture(function()
      local uri1, pid1 = unix_server("m1", "memory 64M")
      local uri2 = unix_server("m2", "memory 64M")
      local dev = G.device(G.example("mirror-nbd", uri1, uri2, "64MiB"))
      local len = 4 * 1024 * 1024
      local md5 = G.write_random_at(dev.path, 0, len)
      G.must("sync")
      assert.are.equal(md5, export_md5(uri1, len))
      assert.are.equal(md5, export_md5(uri2, len))
      G.must("kill -9 %d", pid1)
      G.must("echo 3 > /proc/sys/vm/drop_caches")
      assert.are.equal(md5, G.md5_at(dev.path, 0, len))
      -- writes go on to the survivor
      local md5b = G.write_random_at(dev.path, len, 65536)
      assert.are.equal(md5b, G.md5_at(dev.path, len, 65536))
    end)
    assert.matches("lost the NBD connection", said)
    assert.matches("lost the NBD connection to '", said, 1, true)
  end)

  it("takes the mirror's size from the smaller export when none is given", function()
    local uri1 = unix_server("s1", "memory 48M")
    local uri2 = unix_server("s2", "memory 40M")
    local dev = G.device(G.example("mirror-nbd", uri1, uri2))
    assert.are.equal(40 * 1048576, dev:info().size)
    assert.are.equal(tostring(40 * 1048576), G.must("blockdev --getsize64 %s", dev.path):match("%d+"))
    -- its last sector is both exports' (and the larger one's beyond is not used)
    local md5 = G.write_random_at(dev.path, 40 * 1048576 - 65536, 65536)
    G.must("sync")
    assert.are.equal(md5, G.md5_at(dev.path, 40 * 1048576 - 65536, 65536))
    -- a size that does not fit the smaller export is refused, naming it
    local ok, err = pcall(G.device, G.example("mirror-nbd", uri1, uri2, "44MiB"))
    assert.is_false(ok)
    assert.matches("holds 41943040 bytes, less than size 46137344", tostring(err))
  end)
end)
