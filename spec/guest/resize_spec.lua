-- Resize (UBLK_F_UPDATE_SIZE, Linux 6.16+): a running device grows under a
-- mounted ext4 (resize2fs), shrinks only when forced, and each backend
-- (memory, file, nbd, a Lua backend through its delegates) serves the new
-- size; on 6.12 it is refused by name,
-- with a SKIP line.
local G = require "guest"
local M = require "manage"
local ublk = require "ublk"
local cli, add, listed, clean = M.cli, M.add, M.listed, M.clean

local features = ublk.features() or {} -- nil on a host without ublk (busted loads this file there too)
local MiB = 1048576

local function getsize(path) return tonumber(G.must("blockdev --getsize64 %s", path):match("%d+")) end
local function file_size(path) return tonumber(G.must("stat -c %%s %s", path):match("%d+")) end

local function skip_line(what)
  print(("# SKIP %s: needs UBLK_F_UPDATE_SIZE (Linux 6.16+), which kernel %s lacks"):format(what,
    (G.must("uname -r"):gsub("%s+$", ""))))
end

-- `resize -n ID SIZE` from FROM_MIB to TO_MIB: it says so, the block
-- device has the new size, and how long it took is printed (as `what`)
local function resized(cli, id, from_mib, to_mib, what)
  local t0 = G.now()
  local rc, out = cli("resize -n %d %dMiB", id, to_mib)
  assert.are.equal(0, rc, out)
  assert.matches(("dev id %d: resized from %d MiB to %d MiB"):format(id, from_mib, to_mib), out)
  print(("\n  %s: %.0f ms"):format(what, (G.now() - t0) * 1000))
  assert.are.equal(to_mib * MiB, getsize("/dev/ublkb" .. id))
end

describe("#guest resize", function()
  local t_start
  setup(function() t_start = G.now() end)
  teardown(function() print(("# resize_spec: %.1f s"):format(G.now() - t_start)) end)
  after_each(function()
    G.sh("umount /tmp/ublk-resize 2>/dev/null")
    G.close_all()
    M.reset()
  end)

  it("grows a mounted ext4 (memory backend, CLI); shrinks only with --force; survives a recovery", function()
    local id, pid = add("-t memory -s 64MiB")
    local path = "/dev/ublkb" .. id
    if not features.update_size then
      local rc, out = cli("resize -n %d 128MiB", id)
      assert.are.equal(1, rc, out)
      assert.matches("resize needs UBLK_F_UPDATE_SIZE %(Linux 6%.16%+%), which this kernel lacks", out)
      assert.are.equal(64 * MiB, getsize(path))
      assert.are.equal(0, (cli("del -n %d", id)))
      clean()
      skip_line("resize (CLI)")
      return
    end
    G.must("mkfs.ext4 -q %s && mkdir -p /tmp/ublk-resize && mount %s /tmp/ublk-resize", path, path)
    G.must("head -c 20M /dev/urandom > /tmp/ublk-resize/a")
    local md5a = G.must("md5sum < /tmp/ublk-resize/a")
    -- 80 MiB more does not fit in 64 MiB: the space resize2fs adds is real
    assert.falsy(G.sh("head -c 80M /dev/zero > /tmp/ublk-resize/b 2>/dev/null"))
    G.must("rm -f /tmp/ublk-resize/b")
    resized(cli, id, 64, 160, "resize 64 -> 160 MiB")
    assert.are.equal(160 * MiB, listed(id).size)
    -- the backend: its store file holds the new size
    assert.are.equal(160 * MiB, file_size(listed(id).ublk_lua.store))
    G.must("resize2fs %s 2>&1", path)
    G.must("head -c 80M /dev/urandom > /tmp/ublk-resize/b && sync")
    local md5b = G.must("md5sum < /tmp/ublk-resize/b")
    assert.are.equal(md5a, G.must("md5sum < /tmp/ublk-resize/a"))
    -- smaller: refused while it would cut the data, by the CLI and the server
    local rc, out = cli("resize -n %d 32MiB", id)
    assert.are.equal(1, rc, out)
    assert.matches("the data past it would be cut; shrink what is on it first", out)
    assert.are.equal(160 * MiB, getsize(path))
    -- the server dies: the recovery serves the size the device has now
    G.must("umount /tmp/ublk-resize")
    G.must("kill -9 %d", pid)
    assert.truthy(M.wait_until(function() return listed(id).state == "QUIESCED" end), "not QUIESCED")
    rc, out = cli("recover -n %d", id)
    assert.are.equal(0, rc, out)
    assert.matches("160 MiB.*recovered", out)
    G.must("mount %s /tmp/ublk-resize", path)
    assert.are.equal(md5a, G.must("md5sum < /tmp/ublk-resize/a"))
    assert.are.equal(md5b, G.must("md5sum < /tmp/ublk-resize/b"))
    -- shrink the file system first (with room: resize2fs's minimum is
    -- cautious), then the device, forced
    G.must("rm /tmp/ublk-resize/b && umount /tmp/ublk-resize")
    G.must("e2fsck -f -y %s 2>&1 && resize2fs %s 120M 2>&1", path, path)
    rc, out = cli("resize -n %d 128MiB --force", id)
    assert.are.equal(0, rc, out)
    assert.are.equal(128 * MiB, getsize(path))
    assert.are.equal(128 * MiB, file_size(listed(id).ublk_lua.store))
    G.must("e2fsck -f -n %s 2>&1", path)
    G.must("mount %s /tmp/ublk-resize", path)
    assert.are.equal(md5a, G.must("md5sum < /tmp/ublk-resize/a"))
    G.must("umount /tmp/ublk-resize")
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)

  it("reaches a script that waits for its signal in a loop of its own (ublk.wait_signal)", function()
    if not features.update_size then skip_line("resize of a looping script") return end
    -- `ublk-lua SCRIPT` in the foreground: the script never returns, so
    -- `add` (which waits for it to) cannot start it
    local p, path = G.serve("spec/guest/scripts/loop-wait.lua")
    local id = tonumber(path:match("(%d+)$"))
    local md5 = G.write_random_at(path, 0, MiB)
    resized(cli, id, 8, 16, "resize of a looping script's device")
    assert.are.equal(md5, G.md5_at(path, 0, MiB))
    p:kill("TERM")
    assert.are.equal(0, (p:wait(30)))
    assert.matches("loop saw SIGTERM", p:out())
    p:cleanup()
    clean()
  end)

  it("dev:resize grows a file (the file grows) and an nbd export's device (up to the export)", function()
    local img = "/tmp/ublk-resize.img"
    G.must("rm -f %s && truncate -s 16M %s", img, img)
    local dev = G.device{ backend = "file", path = img }
    if not features.update_size then
      local ok, err = dev:resize("32MiB")
      assert.is_nil(ok)
      assert.matches("resize needs UBLK_F_UPDATE_SIZE %(Linux 6%.16%+%), which this kernel lacks", err)
      dev:close()
      os.remove(img)
      skip_line("resize (dev:resize, file and nbd)")
      return
    end
    assert.has_error(function() dev:resize("12 parsecs") end)
    assert(dev:resize("32MiB"))
    assert.are.equal(32 * MiB, dev:info().size)
    assert.are.equal(32 * MiB, getsize(dev.path))
    assert.are.equal(32 * MiB, file_size(img))
    local md5 = G.write_random_at(dev.path, 24 * MiB, 4 * MiB)
    assert.are.equal(md5, G.must("dd if=%s bs=1M skip=24 count=4 status=none | md5sum", img):match("%x+"))
    local ok, err = dev:resize("16MiB")
    assert.is_nil(ok)
    assert.matches("the data past it would be cut", err)
    assert(dev:resize("16MiB", true))
    assert.are.equal(16 * MiB, getsize(dev.path))
    assert.are.equal(32 * MiB, file_size(img)) -- the user's file keeps its data
    dev:close()
    os.remove(img)
    -- nbd: a device smaller than its export grows up to it, not past
    G.must("rm -f /tmp/ublk-resize-nbd.sock")
    G.must("nbdkit -P /tmp/ublk-resize-nbd.pid -U /tmp/ublk-resize-nbd.sock memory 64M")
    G.must("timeout 10 sh -c 'until [ -S /tmp/ublk-resize-nbd.sock ]; do sleep 0.05; done'")
    dev = G.device{ backend = "nbd", uri = "nbd+unix:///?socket=/tmp/ublk-resize-nbd.sock",
      size = "32MiB" }
    assert(dev:resize("64MiB"))
    assert.are.equal(64 * MiB, getsize(dev.path))
    md5 = G.write_random_at(dev.path, 60 * MiB, 4 * MiB)
    assert.are.equal(md5, G.md5_at(dev.path, 60 * MiB, 4 * MiB))
    ok, err = dev:resize("96MiB")
    assert.is_nil(ok)
    assert.matches("holds 67108864 bytes, less than 100663296", err)
    assert.are.equal(64 * MiB, getsize(dev.path))
    dev:close()
    G.sh("kill $(cat /tmp/ublk-resize-nbd.pid); rm -f /tmp/ublk-resize-nbd.pid")
  end)

  it("dev:resize grows a Lua backend through its delegates; one keeping its own data is refused", function()
    local mem = ublk.memory()
    local dev = G.device{ backend = ublk.backend{ size = "16MiB",
      read = function(_, req) return mem:read(req) end,
      write = function(_, req) return mem:write(req) end } }
    if not features.update_size then
      assert.is_nil((dev:resize("32MiB")))
      dev:close()
      skip_line("resize of a Lua backend")
      return
    end
    local md5 = G.write_random_at(dev.path, 12 * MiB, 4 * MiB)
    assert(dev:resize("32MiB"))
    assert.are.equal(32 * MiB, getsize(dev.path))
    local md5b = G.write_random_at(dev.path, 28 * MiB, 4 * MiB) -- past the old end
    assert.are.equal(md5, G.md5_at(dev.path, 12 * MiB, 4 * MiB))
    assert.are.equal(md5b, G.md5_at(dev.path, 28 * MiB, 4 * MiB))
    dev:close()
    local region = ublk.shared("16MiB")
    dev = G.device{ backend = ublk.backend{ size = "16MiB",
      read = function(_, req) return req:copy(region.ptr + req.offset) end,
      write = function(_, req) return req:copy(region.ptr + req.offset) end } }
    local ok, err = dev:resize("32MiB")
    assert.is_nil(ok)
    assert.matches("a Lua backend without C delegates keeps its data itself", err, 1, true)
    assert.are.equal(16 * MiB, getsize(dev.path))
    dev:close()
  end)
end)
