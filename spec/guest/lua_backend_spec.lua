-- Backends written in Lua: the examples, errors, threads, async.
local ffi = require "ffi"
local ublk = require "ublk"
local G = require "guest"
local stderr = require "stderr"

local function zeros_md5(n)
  return G.must("head -c %d /dev/zero | md5sum", n):match("%x+")
end

describe("#guest Lua backends", function()
  after_each(G.no_leftovers)

  it("xor.lua: data reads back as written, and the store holds it scrambled", function()
    local store = "/tmp/ublk-xor-store.img"
    os.remove(store)
    local dev = G.device(G.example("xor", store))
    local md5 = G.write_random_at(dev.path, 4096 + 512, 2^20)
    assert.are.equal(md5, G.md5_at(dev.path, 4096 + 512, 2^20))
    dev:close()
    -- the raw store is the data XOR 0x5a, byte for byte
    local raw = G.must("dd if=%s bs=512 skip=9 count=2048 status=none | md5sum", store):match("%x+")
    assert.are_not.equal(md5, raw)
    local unscrambled = G.must([[dd if=%s bs=512 skip=9 count=2048 status=none |
      luajit -e 'local s = io.read("*a"); local t = {}
      for i = 1, #s do t[i] = string.char(bit.bxor(s:byte(i), 0x5a)) end
      io.write(table.concat(t))' | md5sum]], store):match("%x+")
    assert.are.equal(md5, unscrambled)
    os.remove(store)
  end)

  it("xor.lua over the memory backend passes fio crc32c verify with 2 queues", function()
    local dev = G.device(G.example("xor"))
    G.must("fio --name=v --filename=%s --ioengine=io_uring --direct=1 --rw=randwrite "
      .. "--bsrange=4k-256k --iodepth=16 --numjobs=2 --cpus_allowed=0,1 --cpus_allowed_policy=split "
      .. "--size=16M --offset_increment=32M --verify=crc32c --verify_fatal=1 --verify_state_save=0",
      dev.path)
    local s = dev:stats()
    assert.truthy(s[1].writes > 0 and s[2].writes > 0)
  end)

  it("faulty.lua: exactly the chosen sectors fail with EIO", function()
    local dev = G.device(G.example("faulty", "1000,1003"))
    local failed = {}
    for sector = 995, 1008 do
      local ok, out = G.sh("dd if=%s of=/dev/null bs=512 skip=%d count=1 iflag=direct status=none",
        dev.path, sector)
      if not ok then
        assert.matches("Input/output error", out)
        failed[#failed + 1] = sector
      end
    end
    assert.are.same({ 1000, 1003 }, failed)
    assert.falsy(G.sh("dd if=/dev/zero of=%s bs=512 seek=1003 count=1 oflag=direct status=none", dev.path))
    assert.truthy(G.sh("dd if=/dev/zero of=%s bs=512 seek=1004 count=1 oflag=direct status=none", dev.path))
  end)

  it("slow.lua: keeps many sleeping requests in flight on one queue", function()
    local t = G.example("slow", "20")
    local dev = G.device(t)
    local md5 = G.write_random_at(dev.path, 0, 2^20)
    G.must("taskset -c 0 fio --name=qd --filename=%s --ioengine=io_uring --direct=1 --rw=randread "
      .. "--bs=4k --iodepth=16 --size=4M --number_ios=128", dev.path)
    local slot = ffi.cast("uint32_t *", t.backend.spec.inflight.ptr)
    -- the queue the kernel maps CPU 0 to (its thread may run anywhere)
    local q
    for i, s in ipairs(dev:stats()) do
      for _, cpu in ipairs(s.cpus) do
        if cpu == 0 then q = i - 1 end
      end
    end
    assert.truthy(slot[2 * q + 1] >= 8,
      ("at most %d requests were in flight at once: serialised"):format(slot[2 * q + 1]))
    assert.are.equal(md5, G.md5_at(dev.path, 0, 2^20))
  end)

  it("cow.lua: reads the base until written, and never changes the base file", function()
    local base = "/tmp/ublk-cow-base.img"
    G.must("head -c %d /dev/urandom > %s", 8 * 2^20, base)
    local before = G.must("md5sum < %s", base):match("%x+")
    local dev = G.device(G.example("cow", base))
    assert.are.equal(G.must("head -c 65536 %s | md5sum", base):match("%x+"), G.md5_at(dev.path, 0, 65536))
    local md5 = G.write_random_at(dev.path, 4096 + 512, 8192)
    assert.are.equal(md5, G.md5_at(dev.path, 4096 + 512, 8192))
    -- the sectors around the write still come from the base
    assert.are.equal(G.must("dd if=%s bs=512 skip=8 count=1 status=none | md5sum", base):match("%x+"),
      G.md5_at(dev.path, 4096, 512))
    dev:close()
    assert.are.equal(before, G.must("md5sum < %s", base):match("%x+"))
    os.remove(base)
  end)

  it("trace.lua: logs every request with its offset, length and latency", function()
    local prefix = "/tmp/ublk-trace-spec"
    local dev = G.device(G.example("trace", prefix))
    G.must("dd if=/dev/zero of=%s bs=4096 seek=3 count=1 oflag=direct status=none", dev.path)
    G.must("dd if=%s of=/dev/null bs=8192 skip=5 count=1 iflag=direct status=none", dev.path)
    G.must("blkdiscard -o 1048576 -l 65536 %s", dev.path)
    dev:close() -- close hooks flush the logs
    local log = G.must("cat %s.q*", prefix)
    assert.matches("write 12288 4096 [%d.]+us ok", log)
    assert.matches("read 40960 8192 [%d.]+us ok", log)
    assert.matches("discard 1048576 65536 [%d.]+us ok", log)
    G.sh("rm -f %s.q*", prefix)
  end)

  it("sparse.lua: takes blocks only when written and gives them back on discard", function()
    local t = G.example("sparse", "64MiB")
    local dev = G.device(t)
    local base_blocks = t.backend.provisioned() -- the partition scan wrote nothing
    assert.are.equal(0, base_blocks)
    local md5 = G.write_random_at(dev.path, 2^20 + 512, 64 * 1024)
    assert.are.equal(17, t.backend.provisioned()) -- 64 KiB at +512: 17 blocks
    assert.are.equal(md5, G.md5_at(dev.path, 2^20 + 512, 64 * 1024))
    assert.are.equal(zeros_md5(4096), G.md5_at(dev.path, 8 * 2^20, 4096))
    G.must("blkdiscard -o %d -l %d %s", 2^20, 128 * 1024, dev.path)
    assert.are.equal(0, t.backend.provisioned())
    assert.are.equal(zeros_md5(64 * 1024), G.md5_at(dev.path, 2^20 + 512, 64 * 1024))
  end)

  it("luamem.lua: a RAM disk in pure Lua keeps an ext4 tree intact", function()
    local dev = G.device(G.example("luamem", "128MiB"))
    local mnt = "/tmp/ublk-luamem"
    G.must("mkfs.ext4 -q -F %s && mkdir -p %s && mount %s %s", dev.path, mnt, dev.path, mnt)
    G.must("cp -a /usr/share/lua %s/", mnt)
    local sums = G.must("cd /usr/share/lua && find . -type f | LC_ALL=C sort | xargs md5sum")
    G.must("umount %s && mount %s %s", mnt, dev.path, mnt)
    assert.are.equal(sums, G.must("cd %s/lua && find . -type f | LC_ALL=C sort | xargs md5sum", mnt))
    G.must("umount %s", mnt)
    assert.truthy(G.sh("e2fsck -fn %s", dev.path))
  end)

  it("runs each queue's handlers on that queue's thread, in its own Lua state", function()
    local seen = ublk.shared(4096)
    local dev = G.device {
      queues = 2,
      backend = ublk.backend {
        size = "16MiB", seen = seen,
        open = function(self, q) _G.MY_QUEUE = q.id end, -- a global of this state only
        read = function(self, req)
          local p = ffi.cast("int32_t *", self.seen.ptr) + 4 * req.queue
          p[0], p[1], p[2] = ublk.thread_id(), _G.MY_QUEUE + 1, ublk.queue_id() + 1
          ffi.fill(req.buf, req.length, 0)
        end,
      },
    }
    for cpu = 0, 1 do
      G.must("taskset -c %d dd if=%s of=/dev/null bs=4096 count=4 iflag=direct status=none", cpu, dev.path)
    end
    local stats = dev:stats()
    local p = ffi.cast("int32_t *", seen.ptr)
    for q = 0, 1 do
      assert.are.equal(stats[q + 1].tid, p[4 * q], "queue " .. q .. "'s handler ran on its thread")
      assert.are.equal(q + 1, p[4 * q + 1], "queue " .. q .. " has its own Lua state")
      assert.are.equal(q + 1, p[4 * q + 2])
    end
    assert.are_not.equal(p[0], p[4])
  end)

  it("fails one I/O when a handler raises, logs it, and keeps serving", function()
    local dev = G.device {
      queues = 2,
      backend = ublk.backend {
        size = "16MiB", store = ublk.shared("16MiB"),
        read = function(self, req)
          if (req.offset / 512) % 10 == 9 then error("every tenth sector is cursed") end
          ffi.copy(req.buf, self.store.ptr + req.offset, req.length)
        end,
        write = function(self, req)
          if req.offset == 4096 * 100 then return nil, "ENOSPC" end
          ffi.copy(self.store.ptr + req.offset, req.buf, req.length)
        end,
      },
    }
    local failed = 0
    local said = stderr.capture(function()
      for sector = 0, 99 do
        if not G.sh("dd if=%s of=/dev/null bs=512 skip=%d count=1 iflag=direct status=none", dev.path, sector) then
          failed = failed + 1
        end
      end
    end)
    assert.are.equal(10, failed)
    -- one message per failure (at most 5 a second per queue), naming the
    -- handler, its traceback on the indented lines after it
    local lines = 0
    for line in said:gmatch("[^\n]+") do
      if not line:match("^    ") then
        lines = lines + 1
        if not line:match("more handler errors not shown") then assert.matches("^ublk%-lua: error: dev %d+ queue %d tag %d+: read handler failed: .*"
          .. "every tenth sector is cursed$", line) end
      end
    end
    assert.matches("cursed\n    stack traceback:\n", said)
    assert.truthy(lines >= 1 and lines <= 12, said)
    local ok, out = G.sh("dd if=/dev/zero of=%s bs=4096 seek=100 count=1 oflag=direct status=none", dev.path)
    assert.falsy(ok)
    assert.matches("No space left on device", out)
    -- still serving, and the data is right
    local md5 = G.write_random_at(dev.path, 5120, 4096) -- sectors 10..17
    assert.are.equal(md5, G.md5_at(dev.path, 5120, 4096))
    assert.are.equal("started", dev:state())
  end)

  it("refuses, before any device exists, a backend it cannot copy to the queues", function()
    local handle = io.tmpfile()
    local ok, err = pcall(ublk.device, { backend = ublk.backend {
      size = "4MiB", read = function() return handle:read(1) end } })
    assert.falsy(ok)
    assert.matches("cannot copy upvalue 'handle' of the backend.read to the queue threads", err)
    handle:close()
    assert.are.same({}, G.leftovers())
  end)

  it("reads files asynchronously with ublk.io.pread in coroutine handlers", function()
    local img = "/tmp/ublk-pread.img"
    G.must("head -c %d /dev/urandom > %s", 4 * 2^20, img)
    local dev = G.device {
      queues = 2,
      backend = ublk.backend {
        size = "4MiB", async = true,
        open = function(self) self.fd = assert(ublk.io.open(img, "r")) end,
        close = function(self) ublk.io.close(self.fd) end,
        read = function(self, req)
          return ublk.io.pread(self.fd, req.buf, req.length, req.offset)
        end,
      },
    }
    assert.are.equal(G.must("md5sum < %s", img):match("%x+"), G.md5_at(dev.path, 0, 4 * 2^20))
    assert.are.equal("1", G.read_file(("/sys/block/ublkb%d/ro"):format(dev.id)):match("%d"))
    os.remove(img)
  end)
end)
