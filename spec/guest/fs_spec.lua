-- A real filesystem on a ublk disk: mkfs.ext4, copy a tree in, fsck clean,
-- and the same bytes after a remount.
local G = require "guest"

local function tree_sums(dir)
  return G.must("cd %s && find . -type f | LC_ALL=C sort | xargs -d '\\n' md5sum", dir)
end

describe("#guest filesystem", function()
  local mnt = "/tmp/ublk-mnt"
  after_each(function()
    G.sh("umount %s", mnt)
    G.close_all()
    assert.are.same({}, G.leftovers())
  end)

  for _, backend in ipairs({ "memory", "file" }) do
    it("keeps an ext4 tree intact across unmount, fsck and remount (" .. backend .. ")", function()
      local t = { size = "256MiB", queues = 2, backend = backend }
      if backend == "file" then t.path, t.create = "/tmp/ublk-fs.img", true end
      local dev = G.device(t)
      local src = "/usr/share/lua"  -- a few hundred files of varied sizes
      G.must("mkfs.ext4 -q -F %s", dev.path)
      G.must("mkdir -p %s && mount %s %s", mnt, dev.path, mnt)
      G.must("cp -a %s %s/tree", src, mnt)
      local before = tree_sums(src)
      G.must("umount %s", mnt)
      local ok, out = G.sh("e2fsck -fn %s", dev.path)
      assert(ok, "e2fsck found problems:\n" .. out)
      G.must("echo 3 > /proc/sys/vm/drop_caches")
      G.must("mount %s %s", dev.path, mnt)
      assert.are.equal(before, tree_sums(mnt .. "/tree"))
      G.must("umount %s", mnt)
      if backend == "file" then
        -- the flushes that ext4 sends reached the file backend
        assert.truthy(dev:stats().total.flushes > 0, "no flush reached the backend")
        dev:close()
        os.remove(t.path)
      end
    end)
  end
end)
