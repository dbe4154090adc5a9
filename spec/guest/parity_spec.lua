-- Kernel parity (issue 22): what the running kernel's driver can do, a
-- script and the CLI can ask for; a 7.x-only feature says on 6.12 that it
-- skips, by name.
local G = require "guest"
local json = require "ublk.json"
local M = require "manage"
local ublk = require "ublk"
local cli, add, listed, clean = M.cli, M.add, M.listed, M.clean
local ffi = require "ffi"
require "ublk.libc"

local features, mask = ublk.features() -- nil on a host without ublk (busted loads this file there too)
features = features or {}

local t_start
local function skip_line(what, needs)
  print(("# SKIP %s: needs %s, which kernel %s lacks"):format(what, needs,
    G.must("uname -r"):gsub("%s+$", "")))
end

describe("#guest kernel parity", function()
  setup(function() t_start = G.now() end)
  teardown(function() print(("# parity_spec: %.1f s"):format(G.now() - t_start)) end)
  after_each(function()
    G.close_all()
    M.reset()
  end)

  it("features shows every bit the kernel reports, unnamed ones as 'bit N'", function()
    local n = 0
    for bit = 0, 52 do
      if math.floor(mask / 2 ^ bit) % 2 == 1 then n = n + 1 end
    end
    local rc, out = cli("features --json")
    assert.are.equal(0, rc, out)
    local f = assert(json.decode(out))
    assert.are.equal(n, #f.features, out)
    for _, name in ipairs(f.features) do assert.is_true(features[name], name) end
    if math.floor(mask / 2 ^ 20) % 2 == 1 then -- 7.3: UBLK_F_IO_DESC_SIZE
      assert.is_true(features.io_desc_size)
    else
      assert.is_nil(features.io_desc_size)
    end
    assert.is_nil(out:match('"bit %d"'), "a bit this ublk-lua names shown as a number: " .. out)
  end)

  it("more queues than CPUs: the kernel's count is taken, and said", function()
    local n = G.ncpus()
    local dev = G.device{ size = "16MiB", queues = n + 3 }
    local info = dev:info()
    assert.are.equal(n, info.queues)
    assert.are.equal(n + 3, info.queues_asked)
    assert.are.equal("kernel", info.queues_limited_by)
    -- every queue serves: data through all of them, by checksum
    local md5 = G.write_random_at(dev.path, 0, 4 * 1048576)
    assert.are.equal(md5, G.md5_at(dev.path, 0, 4 * 1048576))
    dev:close()
    local id, _, line = add(("-t memory -s 16MiB -q %d"):format(n + 3))
    assert.matches(("%d queues? x 128 %%(queues = %d asked: the kernel allows %d, one per CPU%%)")
      :format(n, n + 3, n), line)
    assert.are.equal(n, listed(id).queues)
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)

  it("quiesce under fio verify: list shows QUIESCED, I/O waits, recover serves it, 0 errors", function()
    local id, pid = add("-t memory -s 128MiB -q 2")
    local path = "/dev/ublkb" .. id
    -- 500 IOPS a job: its 4096 writes take 8 s, so fio is still writing
    -- when the quiesce (at 2 s) and the read check (a second on) come, even
    -- on a loaded host
    local fio = M.verify_writer(path, 16, 64, 500)
    G.sh("sleep 2")
    local rc, out = cli("quiesce -n %d", id)
    assert.are.equal(0, rc, out)
    assert.matches("dev id " .. id .. ": QUIESCED in %d+ ms, its I/O waits", out)
    if not features.quiesce then assert.matches("this kernel has no QUIESCE_DEV", out) end
    print("\n  " .. out:gsub("%s+$", ""))
    assert.falsy(M.alive(pid), "the server is still there")
    local d = listed(id)
    assert.are.equal("QUIESCED", d.state)
    assert.is_true(d.recoverable)
    -- a read waits, neither served nor failed, while no server is there
    local reader = G.spawn(("dd if=%s of=/dev/null bs=4k count=1 iflag=direct"):format(path), true)
    G.sh("sleep 1")
    assert.falsy(reader:exited(), "a read completed on a QUIESCED device")
    assert.falsy(fio:exited(), "fio ended while the device was QUIESCED: " .. fio:out())
    rc, out = cli("recover -n %d", id)
    assert.are.equal(0, rc, out)
    assert.matches("dev id " .. id .. ": " .. path .. " 128 MiB, 2 queues x 128, .*recovered", out)
    assert.are.equal(0, reader:wait(30), reader:err())
    reader:cleanup()
    assert.are.equal(0, fio:wait(300), fio:out() .. fio:err())
    assert.matches("err= 0", fio:out())
    assert.not_matches("verify", fio:err())
    fio:cleanup()
    assert.are.equal("LIVE", listed(id).state)
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)

  it("quiesce refuses, by name, a device that could not wait QUIESCED", function()
    local id, pid = add("-t memory -s 16MiB -r false")
    local rc, out = cli("quiesce -n %d", id)
    assert.are.equal(1, rc, out)
    assert.matches("recovery = false", out)
    assert.truthy(M.alive(pid))
    assert.are.equal("LIVE", listed(id).state)
    assert.are.equal(0, (cli("del -n %d", id)))
    id, pid = add("-t memory -s 16MiB -r queue")
    rc, out = cli("quiesce -n %d", id)
    if features.quiesce then
      assert.are.equal(0, rc, out)
      assert.are.equal("QUIESCED", listed(id).state)
    else
      assert.are.equal(1, rc, out)
      assert.matches("quiesce needs UBLK_F_QUIESCE %(Linux 6.16%+%)", out)
      assert.truthy(M.alive(pid))
      assert.are.equal("LIVE", listed(id).state)
    end
    assert.are.equal(0, (cli("del -n %d", id)))
    if features.user_recovery_fail_io then
      id = add("-t memory -s 16MiB -r fail")
      rc, out = cli("quiesce -n %d", id)
      assert.are.equal(1, rc, out)
      assert.matches('recovery = "fail"', out)
      assert.are.equal(0, (cli("del -n %d", id)))
    else
      skip_line("quiesce of a recovery = \"fail\" device", "USER_RECOVERY_FAIL_IO (Linux 6.13+)")
    end
    rc, out = cli("quiesce -n 4242")
    assert.are.equal(1, rc, out)
    clean()
  end)

  -- An MBR with one Linux partition from sector 2048 to the end, written
  -- by hand (the guest has no sfdisk).
  local function mbr_image(path, mib)
    local sectors = mib * 2048
    local function le32(n)
      return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256,
        math.floor(n / 16777216) % 256)
    end
    local entry = "\0\0\0\0" .. "\131" .. "\0\0\0" .. le32(2048) .. le32(sectors - 2048)
    local sector0 = ("\0"):rep(446) .. entry .. ("\0"):rep(48) .. "\85\170"
    G.must("truncate -s %dM %s", mib, path)
    local f = assert(io.open(path, "r+b"))
    f:write(sector0)
    f:close()
  end
  local function has_part(path)
    return G.sh("test -e /sys/block/%s/%sp1", path:match("ublkb%d+"), path:match("ublkb%d+"))
  end

  it("no_auto_part_scan: START_DEV reads no partition table; a rescan still finds it", function()
    local img = "/tmp/ublk-parts.img"
    mbr_image(img, 16)
    -- without it the kernel finds the partition by itself: the image is right
    local dev = G.device{ backend = "file", path = img }
    assert.truthy(M.wait_until(function() return has_part(dev.path) end, 5), "no p1 at all")
    dev:close()
    if not features.no_auto_part_scan then
      local none, msg = ublk.device{ backend = "file", path = img, no_auto_part_scan = true }
      assert.is_nil(none)
      assert.matches("no_auto_part_scan = true needs UBLK_F_NO_AUTO_PART_SCAN %(Linux 7%.0%+%)", msg)
      assert.are.same({}, G.leftovers())
      skip_line("no_auto_part_scan on a device", "UBLK_F_NO_AUTO_PART_SCAN (Linux 7.0+)")
      os.remove(img)
      return
    end
    dev = G.device{ backend = "file", path = img, no_auto_part_scan = true }
    assert.is_true(dev:info().flags.no_auto_part_scan)
    G.sh("sleep 0.5")
    assert.falsy(has_part(dev.path), "partitions scanned despite no_auto_part_scan")
    G.must("blockdev --rereadpt %s", dev.path)
    assert.truthy(M.wait_until(function() return has_part(dev.path) end, 5), "rescan found no p1")
    dev:close()
    local id, _, line = add("-t file -f " .. img .. " -s 16MiB")
    assert.are.equal(0, (cli("del -n %d", id)))
    assert.not_matches("no auto partition scan", line)
    G.write_file("/tmp/ublk-noscan.lua", ('return { backend = "file", path = %q, '
      .. 'no_auto_part_scan = true }\n'):format(img))
    id, _, line = add("/tmp/ublk-noscan.lua")
    assert.matches("no auto partition scan", line)
    assert.matches("no_auto_part_scan", table.concat(listed(id).flags, " "))
    assert.are.equal(0, (cli("del -n %d", id)))
    os.remove(img)
    clean()
  end)

  it("io_desc_size: each request read at the stride asked for, on 2 queues and after kill -9 + recover", function()
    local t = { size = "32MiB", queues = 2, io_desc_size = 256 }
    if not features.io_desc_size then
      local dev, msg = ublk.device(t)
      assert.is_nil(dev)
      assert.matches("io_desc_size = 256 needs UBLK_F_IO_DESC_SIZE (Linux 7.3+)", msg, 1, true)
      assert.are.same({}, G.leftovers())
      skip_line("io_desc_size on a device", "UBLK_F_IO_DESC_SIZE (Linux 7.3+)")
      return
    end
    -- a descriptor read at 24 bytes a tag, or queue 1's array mapped where a
    -- 24-byte array would start, would fail this verify
    local dev = G.device(t)
    assert.are.equal(256, dev:info().io_desc_size)
    assert.is_true(dev:info().flags.io_desc_size)
    G.fio_verify(dev.path, 32)
    dev:close()
    -- a recovering server maps the arrays at the stride the device has
    G.write_file("/tmp/ublk-iod.lua", 'return { size = "32MiB", queues = 2, io_desc_size = 256 }\n')
    local id, pid, line = add("/tmp/ublk-iod.lua")
    assert.matches("io_desc_size 256", line, 1, true)
    local path = "/dev/ublkb" .. id
    local md5 = G.write_random_at(path, 0, 4194304)
    G.must("kill -9 %d", pid)
    assert.truthy(M.wait_until(function() return listed(id).state == "QUIESCED" end), "not QUIESCED")
    local rc, out = cli("recover -n %d", id)
    assert.are.equal(0, rc, out)
    assert.are.equal(md5, G.md5_at(path, 0, 4194304))
    G.fio_verify(path, 16)
    assert.are.equal(256, listed(id).io_desc_size)
    assert.are.equal(0, (cli("del -n %d", id)))
    os.remove("/tmp/ublk-iod.lua")
    clean()
  end)

  it("threads: 2 queues x 3 threads, each its ring and every third tag, under fio verify and kill -9 + recover", function()
    local t = { size = "64MiB", queues = 2, threads = 3 }
    if not features.per_io_daemon then
      local dev, msg = ublk.device(t)
      assert.is_nil(dev)
      assert.matches("threads = 3 needs UBLK_F_PER_IO_DAEMON (Linux 6.16+)", msg, 1, true)
      assert.are.same({}, G.leftovers())
      skip_line("threads = 3 on a device", "UBLK_F_PER_IO_DAEMON (Linux 6.16+)")
      return
    end
    local dev = G.device(t)
    assert.are.equal(2, dev:info().queues)
    assert.are.equal(3, dev:info().threads)
    G.fio_verify(dev.path, 64)
    -- six threads, each of its own; a queue that fio's CPUs map to has
    -- its requests served by all three (where fio runs on no CPU of a
    -- queue, as with 4 vCPUs, that queue has little to serve)
    local st, tids, busy = dev:stats(), {}, 0
    assert.are.equal(6, #st)
    for i, q in ipairs(st) do
      assert.is_nil(tids[q.tid], "two queue threads share tid " .. q.tid)
      tids[q.tid] = true
    end
    for qi = 0, 1 do
      local n = 0
      for k = 1, 3 do n = n + st[qi * 3 + k].reads + st[qi * 3 + k].writes end
      if n >= 300 then
        busy = busy + 1
        for k = 1, 3 do
          local q = st[qi * 3 + k]
          assert.truthy(q.reads > 0 and q.writes > 0,
            ("queue %d's thread %d served nothing of its %d requests"):format(qi, k - 1, n))
        end
      end
    end
    assert.truthy(busy > 0, "no queue served fio")
    dev:close()
    -- a Lua backend: a Lua state each thread, over one ublk.shared store
    local store = ublk.shared("32MiB")
    dev = G.device{ size = "32MiB", queues = 2, threads = 2, backend = ublk.backend {
      size = "32MiB", store = store,
      read = function(self, req) return req:copy(self.store.ptr + req.offset) end,
      write = function(self, req) return req:copy(self.store.ptr + req.offset) end,
    } }
    G.fio_verify(dev.path, 32)
    dev:close()

    local id, pid, line = add("-t memory -s 64MiB -q 2 --threads 3")
    assert.matches("2 queues x 128, 3 threads each", line, 1, true)
    local path = "/dev/ublkb" .. id
    local md5 = G.write_random_at(path, 0, 8388608)
    G.must("kill -9 %d", pid)
    assert.truthy(M.wait_until(function() return listed(id).state == "QUIESCED" end), "not QUIESCED")
    local rc, out = cli("recover -n %d", id)
    assert.are.equal(0, rc, out)
    assert.matches("3 threads each", out, 1, true)
    assert.are.equal(md5, G.md5_at(path, 0, 8388608))
    G.fio_verify(path, 32)
    rc, out = cli("stats -n %d", id)
    assert.are.equal(0, rc, out)
    assert.matches(("dev id %d: 2 queues x 3 threads,"):format(id), out, 1, true)
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)

  -- An O_DIRECT client, as a database with its buffer pool in a shared
  -- file would be: this process maps `file` itself and writes 1 MiB of it
  -- to the disk at 4 MiB, then reads that back into the next MiB of it.
  -- Returns the bytes written and whether the read got them.
  local function shmem_client(disk, file)
    local MiB = 1048576
    local fd = ffi.C.open(file, 2) -- O_RDWR
    assert.truthy(fd >= 0, file)
    local p = ffi.cast("uint8_t *", ffi.C.mmap(nil, 4 * MiB, 3, 1, fd, 0)) -- RW, MAP_SHARED
    ffi.C.close(fd)
    assert.truthy(p ~= ffi.cast("uint8_t *", -1), "mmap " .. file)
    local seed = G.now() * 1e6 % 4294967296
    for i = 0, MiB - 1 do
      seed = (seed * 1103515245 + 12345) % 4294967296
      p[i] = math.floor(seed / 65536) % 256
    end
    local dfd = ffi.C.open(disk, 2 + 0x4000) -- O_RDWR | O_DIRECT
    assert.truthy(dfd >= 0, disk)
    assert.are.equal(MiB, tonumber(ffi.C.pwrite(dfd, p, MiB, 4 * MiB)))
    ffi.fill(p + MiB, MiB, 0)
    assert.are.equal(MiB, tonumber(ffi.C.pread(dfd, p + MiB, MiB, 4 * MiB)))
    ffi.C.close(dfd)
    local wrote, read = ffi.string(p, MiB), ffi.string(p + MiB, MiB)
    ffi.C.munmap(p, 4 * MiB)
    return wrote, read == wrote
  end

  it("shmem_zc: an O_DIRECT client's buffers in a registered file reach C and Lua backends in place", function()
    local file = "/dev/shm/ublk-zc-test"
    G.must("truncate -s 4M %s", file)
    local t = { size = "32MiB", copy = "buffer", shmem_zc = file }
    if not features.shmem_zc then
      local dev, msg = ublk.device(t)
      assert.is_nil(dev)
      assert.matches("shmem_zc needs UBLK_F_SHMEM_ZC (Linux 7.1+)", msg, 1, true)
      assert.are.same({}, G.leftovers())
      skip_line("shmem_zc on a device", "UBLK_F_SHMEM_ZC (Linux 7.1+)")
      os.remove(file)
      return
    end
    -- the memory backend's own copy (user copy) would not read it there
    local none, msg = ublk.device{ size = "32MiB", shmem_zc = file }
    assert.is_nil(none)
    assert.matches('shmem_zc needs the tag\'s-buffer copy mode, and the memory backend copies '
      .. 'by user copy or zero copy here: set copy = "buffer"', msg, 1, true)
    assert.are.same({}, G.leftovers())

    local store = ublk.shared("32MiB")
    local lua_backend = ublk.backend {
      size = "32MiB", copy = "buffer", store = store,
      read = function(self, req) return req:copy(self.store.ptr + req.offset) end,
      write = function(self, req) return req:copy(self.store.ptr + req.offset) end,
    }
    for _, b in ipairs({ "memory", lua_backend }) do
      local dev = G.device{ size = "32MiB", backend = b, copy = b == "memory" and "buffer" or nil,
        shmem_zc = file }
      assert.is_true(dev:info().flags.shmem_zc)
      assert.is_nil(dev:info().flags.user_recovery)
      local before = dev:stats().total.shmem_zc
      local wrote, same = shmem_client(dev.path, file)
      assert.is_true(same, "the read gave back other bytes than the write")
      -- 1 MiB each way in requests of max_io (512 KiB): all four in place
      assert.are.equal(4, dev:stats().total.shmem_zc - before)
      -- the data is in the backend, as a read through the tag's buffer finds it
      G.write_file("/tmp/ublk-zc-wrote", wrote)
      assert.are.equal(G.must("md5sum < /tmp/ublk-zc-wrote"):match("^%x+"),
        G.md5_at(dev.path, 4194304, 1048576))
      dev:close()
    end
    os.remove("/tmp/ublk-zc-wrote")
    os.remove(file)
  end)

  it("DMA alignment and segment limits reach the block layer; data split by them is intact", function()
    local t = { size = "32MiB", dma_align = 512, max_segments = 4, max_segment_size = "8KiB",
      segment_boundary = "64KiB" }
    if not features.zero_copy then -- 6.15 brought these with working zero copy
      local dev, msg = ublk.device(t)
      assert.is_nil(dev)
      assert.matches("dma_align needs UBLK_PARAM_TYPE_DMA_ALIGN %(Linux 6%.15%+%)", msg)
      t.dma_align = nil
      dev, msg = ublk.device(t)
      assert.is_nil(dev)
      assert.matches("max_segments needs UBLK_PARAM_TYPE_SEGMENT %(Linux 6%.15%+%)", msg)
      assert.are.same({}, G.leftovers())
      skip_line("dma_align and segment limits", "UBLK_PARAM_TYPE_DMA_ALIGN and _SEGMENT (Linux 6.15+)")
      return
    end
    local dev = G.device(t)
    local info = dev:info()
    assert.are.same({ 512, 4, 8192, 65536 }, { info.dma_align, info.max_segments,
      info.max_segment_size, info.segment_boundary })
    local q = "/sys/block/" .. dev.path:match("ublkb%d+") .. "/queue/"
    assert.are.equal("4", G.read_file(q .. "max_segments"):match("%d+"))
    assert.are.equal("8192", G.read_file(q .. "max_segment_size"):match("%d+"))
    assert.are.equal("511", G.read_file(q .. "dma_alignment"):match("%d+"))
    -- 4 KiB..512 KiB writes, each split into requests of at most 4 segments
    G.fio_verify(dev.path, 16)
    local d = listed(dev.id)
    assert.are.same({ 512, 4, 8192, 65536 }, { d.dma_align, d.max_segments,
      d.max_segment_size, d.segment_boundary })
    local _, text = cli("list -n %d", dev.id)
    assert.matches("dma_align 512, segments 4 x 8 KiB, boundary 64 KiB", text)
    dev:close()
  end)
end)
