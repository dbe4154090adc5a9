-- The rbd backend through a real /dev/ublkbN, against a real Ceph cluster
-- that spec/harness/ceph/cluster starts inside the guest (one mon, one OSD on
-- memstore) once for this file.  Bytes are checked by fio's crc32c and by
-- `rbd export` compared with what the device holds; a server killed under
-- fio verify is recovered with no error, by `recover` or by the supervisor
-- of `add --restart`; `reload` swaps a Lua policy over the rbd delegate
-- under a mounted ext4 with a writer running; a stalled OSD fails I/O with
-- EIO within osd_timeout and, once it is back, the same device serves again.
local ublk = require "ublk"
local G = require "guest"
local M = require "manage"

describe("#guest rbd backend", function()
  local conf, dir, t_file
  local n = 0

  setup(function()
    t_file = G.now()
    G.sh("ip link set lo up")
    assert(G.sh("command -v ceph-mon && command -v rbd"),
      "ceph-mon and rbd (ceph-common) are needed: spec/harness/deps installs them")
    local out = G.must("spec/harness/ceph/cluster start")
    conf = out:match("([^\n]+ceph%.conf)\n?$")
    dir = conf:match("^(.*)/ceph%.conf$")
    print(("\n  cluster: %s"):format(out:match("started in [^\n]*") or out))
  end)

  teardown(function()
    if conf then G.must("spec/harness/ceph/cluster stop %s", conf) end
    print(("\n  rbd_spec: %.1f s with the cluster"):format(G.now() - t_file))
  end)

  after_each(function()
    ublk.close_all()
    M.reset()
    assert.are.same({}, G.leftovers())
  end)

  -- a new image (layering only, unless features say otherwise): its name
  local function image(size, features)
    n = n + 1
    local name = "rbd/img" .. n
    G.must("rbd -c %s create --size %s --image-feature %s %s", conf, size,
      features or "layering", name)
    return name
  end

  local MiB = 1048576

  -- md5 of the image's first `len` bytes as the cluster has them
  local function export_md5(name, len)
    local f = "/tmp/ublk-rbd-export.img"
    os.remove(f)
    G.must("rbd -c %s export %s %s", conf, name, f)
    local md5 = G.must("head -c %d %s | md5sum", len, f):match("%x+")
    os.remove(f)
    return md5
  end

  it("passes fio crc32c verify on 2 queues, and rbd export holds what the device holds", function()
    local t0 = G.now()
    local img = image("64M")
    local dev = G.device{ backend = "rbd", image = img, conf = conf, queues = 2, depth = 32 }
    assert.are.equal(64 * 1048576, dev:info().size)
    G.fio_verify(dev.path, 32)
    local s = dev:stats()
    assert.truthy(s[1].writes > 0 and s[2].writes > 0, "both queues served")
    assert.are.equal(0, s.total.errors)
    -- after a flush (fsync of the disk) the cluster has every byte
    G.must("dd if=/dev/null of=%s conv=fsync status=none", dev.path)
    assert.truthy(dev:stats().total.flushes > 0, "the fsync's FLUSH reached the backend")
    local md5 = G.md5_at(dev.path, 0, 64 * MiB)
    assert.are.equal(md5, export_md5(img, 64 * 1048576))
    dev:close()
    print(("\n  fio verify 32 MiB + export: %.1f s"):format(G.now() - t0))
  end)

  it("write_zeroes reads zeroes (blkdiscard -z), discard frees space in the cluster", function()
    local img = image("16M")
    local dev = G.device{ backend = ublk.rbd{ image = img, conf = conf } }
    G.write_random_at(dev.path, 0, 8 * MiB)
    G.must("blkdiscard -z -o 4096 -l 8192 %s", dev.path)
    assert.are.equal(G.must("head -c 8192 /dev/zero | md5sum"):match("%x+"),
      G.md5_at(dev.path, 4096, 8192))
    G.must("dd if=/dev/null of=%s conv=fsync status=none", dev.path)
    local function used()
      return tonumber(G.must("rbd -c %s du --format json %s", conf, img):match('"used_size":(%d+)'))
    end
    local before = used()
    G.must("blkdiscard -o 4194304 -l 4194304 %s", dev.path)
    G.must("dd if=/dev/null of=%s conv=fsync status=none", dev.path)
    assert.is_true(used() < before, "rbd du did not shrink after a discard")
    local s = dev:stats().total
    assert.truthy(s.write_zeroes > 0 and s.discards > 0)
    assert.are.equal(0, s.errors)
  end)

  it("ublk-lua add -t rbd --image: an exclusive-lock image, one queue, bytes in the cluster", function()
    local img = image("32M", "layering,exclusive-lock")
    local ok, out = G.sh("CEPH_CONF=%s %s add -t rbd --image %s -q 2", conf, G.bin, img)
    assert(ok, out)
    local id = assert(tonumber(out:match("dev id (%d+): /dev/ublkb%d+ 32 MiB, 1 queue x 128 "
      .. "%(queues = 2 asked: backend rbd serves at most 1%), rbd")), out)
    local path = "/dev/ublkb" .. id
    local md5 = G.write_random_at(path, MiB, MiB)
    assert.are.equal(md5, G.md5_at(path, MiB, MiB))
    ok, out = G.sh("%s del -n %d", G.bin, id)
    assert(ok, out)
    -- the server's end (rbd_close) left every byte in the cluster
    assert.are.equal(md5, G.must("rbd -c %s export %s - 2>/dev/null | tail -c +1048577 "
      .. "| head -c 1048576 | md5sum", conf, img):match("%x+"))
  end)

  it("examples/rbd-cache.lua: fio verify through the cache, a second read from it, the image has every byte", function()
    local t0 = G.now()
    local img = image("32M")
    local id = M.add(("examples/rbd-cache.lua %s 32MiB %s"):format(img, conf))
    local path = "/dev/ublkb" .. id
    G.fio_verify(path, 16)
    local md5 = G.md5_at(path, 0, 16 * MiB) -- what misses fills
    assert.are.equal(md5, G.md5_at(path, 0, 16 * MiB)) -- from the cache
    local rc, prom = M.cli("stats --prom -n %d", id)
    assert.are.equal(0, rc, prom)
    local hits = tonumber(prom:match('ublk_backend_hits_total{dev="' .. id .. '",queue="0"} (%d+)'))
    local misses = tonumber(prom:match('ublk_backend_misses_total{dev="' .. id .. '",queue="0"} (%d+)'))
    assert.truthy(hits and hits > 0 and misses and misses > 0, prom)
    G.must("dd if=/dev/null of=%s conv=fsync status=none", path)
    assert.are.equal(md5, export_md5(img, 16 * MiB))
    assert.are.equal(0, (M.cli("del -n %d", id)))
    print(("\n  cache: %d hits, %d misses; %.1f s"):format(hits, misses, G.now() - t0))
  end)

  it("refuses an unreachable cluster in one line within osd_timeout, leaving nothing", function()
    G.write_file("/tmp/ublk-rbd-dead.conf",
      "[global]\nmon host = v2:127.0.0.1:9\nauth client required = none\n")
    local t0 = G.now()
    local ok, out = G.sh("printf 'return { backend = \"rbd\", image = \"rbd/x\", conf = "
      .. "\"/tmp/ublk-rbd-dead.conf\", osd_timeout = 2 }' > /tmp/ublk-rbd-dead.lua && "
      .. "%s add /tmp/ublk-rbd-dead.lua", G.bin)
    local took = G.now() - t0
    assert.is_false(ok)
    assert.matches("cannot reach the Ceph cluster", out)
    assert.are.equal(1, select(2, out:gsub("\n", "")), out)
    print(("\n  unreachable cluster refused in %.1f s"):format(took))
    M.clean()
  end)

  it("a server killed under fio verify: recover, 0 errors, data in the cluster", function()
    local img = image("32M")
    local id, pid = M.add(("spec/guest/scripts/rbd.lua %s %s 2"):format(img, conf))
    local path = "/dev/ublkb" .. id
    local fio = M.verify_writer(path, 4, 16, 400)
    G.sh("sleep 3")
    G.must("kill -9 %d", pid)
    assert.truthy(M.wait_until(function() return M.listed(id).state == "QUIESCED" end), "not QUIESCED")
    local t0 = G.now()
    local rc, out = M.cli("recover -n %d", id)
    assert.are.equal(0, rc, out)
    print(("\n  kill -9 -> recovered: %.2f s"):format(G.now() - t0))
    assert.are.equal(0, fio:wait(300), fio:out() .. fio:err())
    assert.matches("err= 0", fio:out())
    fio:cleanup()
    G.must("dd if=/dev/null of=%s conv=fsync status=none", path)
    local md5 = G.md5_at(path, 0, 32 * MiB)
    rc, out = M.cli("del -n %d", id)
    assert.are.equal(0, rc, out)
    assert.are.equal(md5, export_md5(img, 32 * MiB))
    M.clean()
  end)

  it("add --restart: a server killed under fio verify comes back by itself, 0 errors, rbd export equals the device", function()
    local t_case = G.now()
    local img = image("32M")
    local id, pid, line = M.add(("--restart 2 spec/guest/scripts/rbd.lua %s %s 2"):format(img, conf))
    assert.matches("supervised", line)
    local path = "/dev/ublkb" .. id
    local fio = M.verify_writer(path, 4, 16, 400)
    G.sh("sleep 3")
    local back = M.kill_until_restarted(id, pid, 60)
    assert.are.equal(0, fio:wait(300), fio:out() .. fio:err())
    assert.matches("err= 0", fio:out())
    fio:cleanup()
    G.must("dd if=/dev/null of=%s conv=fsync status=none", path)
    local md5 = G.md5_at(path, 0, 32 * MiB)
    local rc, out = M.cli("del -n %d", id)
    assert.are.equal(0, rc, out)
    assert.truthy(M.wait_until(function() return not G.sh("pgrep -f '[u]blk-lua --supervise'") end, 20),
      "supervisor still running")
    assert.are.equal(md5, export_md5(img, 32 * MiB))
    M.clean()
    print(("\n  --restart: kill -9 to LIVE again %.2f s; case %.1f s"):format(back, G.now() - t_case))
  end)

  it("reload swaps a Lua policy over ublk.rbd under a mounted, busy ext4: no I/O error, fsck clean, bytes intact", function()
    local t_case = G.now()
    local img = image("32M")
    local mnt = "/tmp/ublk-reload" -- M.reset unmounts it whatever happens
    G.must("rm -f /tmp/ublk-reload-version")
    local id, pid = M.add(("spec/guest/scripts/rbd-policy.lua v1 %s %s"):format(img, conf))
    local path = "/dev/ublkb" .. id
    assert.are.equal("v1", G.read_file("/tmp/ublk-reload-version"))
    G.must("mkfs.ext4 -q %s && mkdir -p %s && mount %s %s", path, mnt, path, mnt)
    G.must("rm -rf /tmp/reload-src && mkdir -p /tmp/reload-src && for i in $(seq 1 20); do "
      .. "head -c 200000 /dev/urandom > /tmp/reload-src/f$i; done")
    -- a writer that stops at its first I/O error
    local writer = G.spawn(("set -e; for i in $(seq 1 20); do cp /tmp/reload-src/f$i %s/; "
      .. "sync %s/f$i; sleep 0.1; done"):format(mnt, mnt), true)
    G.sh("sleep 1")
    local rc, out = M.cli("reload -n %d spec/guest/scripts/rbd-policy.lua v2 %s %s", id, img, conf)
    assert.are.equal(0, rc, out)
    assert.matches("dev id " .. id .. ": " .. path .. " .*recovered", out)
    local took = out:match("reloaded in %d+ ms %(I/O paused %d+ ms%)") or out
    assert.are.equal(0, writer:wait(120), writer:out() .. writer:err())
    writer:cleanup()
    assert.are.equal("v2", G.read_file("/tmp/ublk-reload-version"))
    assert.are_not.equal(pid, M.listed(id).ublk_lua.pid)
    G.must("cd /tmp/reload-src && md5sum f* > /tmp/reload.md5 && cd %s && md5sum -c --quiet /tmp/reload.md5", mnt)
    G.must("umount %s", mnt)
    G.must("e2fsck -fn %s", path)
    G.must("mount %s %s && cd %s && md5sum -c --quiet /tmp/reload.md5 && cd / && umount %s", path, mnt, mnt, mnt)
    -- what the device holds is what the cluster holds
    G.must("dd if=/dev/null of=%s conv=fsync status=none", path)
    local md5 = G.md5_at(path, 0, 32 * MiB)
    assert.are.equal(0, (M.cli("del -n %d", id)))
    assert.are.equal(md5, export_md5(img, 32 * MiB))
    G.sh("rm -rf /tmp/reload-src /tmp/reload.md5 /tmp/ublk-reload-version")
    M.clean()
    print(("\n  reload over rbd: %s; case %.1f s"):format(took, G.now() - t_case))
  end)

  it("a stalled OSD fails I/O with EIO within osd_timeout; back, the device serves again", function()
    local img = image("16M")
    local dev = G.device{ backend = "rbd", image = img, conf = conf, osd_timeout = 3 }
    local md5 = G.write_random_at(dev.path, 0, MiB)
    local osd = tonumber(G.read_file(dir .. "/run/osd.0.pid"))
    G.must("kill -STOP %d", osd)
    local t0 = G.now()
    local ok, out = G.sh("dd if=%s of=/dev/null bs=4096 skip=1000 count=1 iflag=direct", dev.path)
    local took = G.now() - t0
    G.must("kill -CONT %d", osd)
    assert.is_false(ok, out)
    assert.matches("Input/output error", out)
    print(("\n  stalled OSD -> EIO in %.1f s (osd_timeout 3)"):format(took))
    assert.is_true(took < 10, ("EIO after %.1f s"):format(took))
    -- the OSD is back: the same device reads and writes again
    assert.truthy(M.wait_until(function()
      return G.sh("dd if=%s of=/dev/null bs=4096 count=1 iflag=direct", dev.path)
    end, 30), "no I/O after the OSD came back")
    assert.are.equal(md5, G.md5_at(dev.path, 0, MiB))
    dev:close()
  end)
end)
