-- Discard, write-zeroes and flush reach the backend: they are advertised
-- to the kernel only by backends that support them.
local G = require "guest"

describe("#guest discard and flush", function()
  after_each(G.no_leftovers)

  it("blkdiscard frees the memory backend's pages and reads back zeroes", function()
    -- recovery = false: the store is a memfd of this process
    local dev = G.device{ size = "128MiB", queues = 1, depth = 4, recovery = false }
    assert.are_not.equal("0", G.read_file(("/sys/block/ublkb%d/queue/discard_max_bytes"):format(dev.id)):match("%d+"))
    G.must("dd if=/dev/urandom of=%s bs=1M count=64 oflag=direct status=none", dev.path)
    local full = G.shmem_kib()
    G.must("blkdiscard %s", dev.path)
    local after = G.shmem_kib()
    assert.truthy(full - after >= 60 * 1024,
      ("Shmem went from %d KiB to %d KiB: discard freed too little"):format(full, after))
    assert.truthy(dev:stats().total.discards > 0)
    local zero = G.must("head -c 1048576 /dev/zero | md5sum"):match("%x+")
    assert.are.equal(zero, G.md5_at(dev.path, 0, 2^20))
  end)

  -- A store is reserved whole at add (a full /dev/shm must not fault a
  -- write later), so a discard zeroes it and takes its pages again at once
  -- instead of handing them to whoever fills /dev/shm next.
  it("blkdiscard zeroes the memory backend's /dev/shm store (recovery on), which stays reserved whole", function()
    local dev = G.device{ size = "128MiB", queues = 1, depth = 4 }
    local store = assert(dev:info().store, "no store with recovery on")
    local used = tonumber(G.must("du -k %s", store):match("%d+"))
    assert.truthy(used >= 128 * 1024, ("%s holds %d KiB at add: not reserved"):format(store, used))
    G.must("dd if=/dev/urandom of=%s bs=1M count=64 oflag=direct status=none", dev.path)
    G.must("blkdiscard %s", dev.path)
    local after = tonumber(G.must("du -k %s", store):match("%d+"))
    assert.truthy(after >= 128 * 1024, ("%s went from %d KiB to %d KiB"):format(store, used, after))
    local zero = G.must("head -c 1048576 /dev/zero | md5sum"):match("%x+")
    assert.are.equal(zero, G.md5_at(dev.path, 0, 2^20))
  end)

  it("write-zeroes zeroes a range and keeps its neighbours", function()
    local dev = G.device{ size = "16MiB" }
    local before = G.write_random_at(dev.path, 0, 2^20)
    local tail = G.md5_at(dev.path, 512 * 1024 + 4096, 512 * 1024 - 4096)
    G.must("blkdiscard -z -o %d -l %d %s", 512 * 1024, 4096, dev.path)
    assert.truthy(dev:stats().total.write_zeroes > 0, "no write-zeroes reached the backend")
    local zero = G.must("head -c 4096 /dev/zero | md5sum"):match("%x+")
    assert.are.equal(zero, G.md5_at(dev.path, 512 * 1024, 4096))
    assert.are.equal(tail, G.md5_at(dev.path, 512 * 1024 + 4096, 512 * 1024 - 4096))
    assert.are_not.equal(before, G.md5_at(dev.path, 0, 2^20))
  end)

  it("punches holes in the file backend on discard", function()
    local path = "/tmp/ublk-discard.img"
    local dev = G.device{ backend = "file", path = path, size = "64MiB", create = true }
    G.must("dd if=/dev/urandom of=%s bs=1M count=32 oflag=direct status=none", dev.path)
    local used = tonumber(G.must("du -k %s", path):match("%d+"))
    G.must("blkdiscard %s", dev.path)
    local after = tonumber(G.must("du -k %s", path):match("%d+"))
    assert.truthy(used - after >= 30 * 1024, ("file used %d KiB, then %d KiB"):format(used, after))
    dev:close()
    os.remove(path)
  end)

  it("advertises a write cache for the file backend and flushes reach it", function()
    local path = "/tmp/ublk-flush.img"
    local dev = G.device{ backend = "file", path = path, size = "16MiB", create = true }
    assert.matches("write back", G.read_file(("/sys/block/ublkb%d/queue/write_cache"):format(dev.id)))
    G.must("dd if=/dev/urandom of=%s bs=4096 count=16 oflag=direct conv=fsync status=none", dev.path)
    assert.truthy(dev:stats().total.flushes > 0, "fsync did not reach the backend as a flush")
    dev:close()
    os.remove(path)
  end)

  it("advertises no write cache for the memory backend (nothing to flush)", function()
    local dev = G.device{ size = "16MiB" }
    assert.matches("write through", G.read_file(("/sys/block/ublkb%d/queue/write_cache"):format(dev.id)))
  end)

  -- A commit carries the byte count as an int32: the kernel must never
  -- send a discard or write-zeroes of 2 GiB or more (it once could, up to
  -- 4 GiB, and blkdiscard of a large disk failed with EIO after the work
  -- was done).  Each backend kind, through one whole-device request.
  describe("on a 6 GiB disk, whole-device requests", function()
    local GiB = 2^30
    local function limits(dev)
      for _, what in ipairs{ "discard_max_bytes", "write_zeroes_max_bytes" } do
        local n = tonumber(G.read_file(("/sys/block/ublkb%d/queue/%s"):format(dev.id, what)):match("%d+"))
        assert.truthy(n > 0 and n < 2 * GiB, ("%s = %d: not below 2 GiB"):format(what, n))
      end
    end

    it("null: blkdiscard and blkdiscard -z of the whole disk succeed", function()
      local dev = G.device{ backend = "null", size = "6GiB" }
      limits(dev)
      G.must("blkdiscard %s", dev.path)
      G.must("blkdiscard -z %s", dev.path)
      assert.truthy(dev:stats().total.discards >= 3, "6 GiB should take 3 discards or more")
      assert.truthy(dev:stats().total.write_zeroes >= 3)
    end)

    it("memory: blkdiscard of the whole disk frees what was written past 2 GiB", function()
      local dev = G.device{ size = "6GiB", recovery = false }
      local md5 = G.write_random_at(dev.path, 3 * GiB, 2^20)
      assert.are.equal(md5, G.md5_at(dev.path, 3 * GiB, 2^20))
      G.must("blkdiscard %s", dev.path)
      assert.are.equal(G.must("head -c 1048576 /dev/zero | md5sum"):match("%x+"),
        G.md5_at(dev.path, 3 * GiB, 2^20))
    end)

    it("file: blkdiscard of the whole disk punches the holes", function()
      local path = "/tmp/ublk-discard-big.img"
      local dev = G.device{ backend = "file", path = path, size = "6GiB", create = true }
      G.write_random_at(dev.path, 5 * GiB, 2^20)
      local used = tonumber(G.must("du -k %s", path):match("%d+"))
      G.must("blkdiscard %s", dev.path)
      local after = tonumber(G.must("du -k %s", path):match("%d+"))
      assert.truthy(used - after >= 1000, ("file used %d KiB, then %d KiB"):format(used, after))
      dev:close()
      os.remove(path)
    end)

    it("Lua (examples/sparse.lua): blkdiscard of the whole disk gives every block back", function()
      local t = G.example("sparse", "6GiB")
      local dev = G.device(t)
      G.write_random_at(dev.path, 3 * GiB, 64 * 1024)
      assert.are.equal(16, t.backend.provisioned())
      G.must("blkdiscard %s", dev.path)
      assert.are.equal(0, t.backend.provisioned())
    end)
  end)

  it("advertises no discard when discard = false", function()
    local dev = G.device{ size = "16MiB", discard = false }
    assert.are.equal("0", G.read_file(("/sys/block/ublkb%d/queue/discard_max_bytes"):format(dev.id)):match("%d+"))
  end)
end)
