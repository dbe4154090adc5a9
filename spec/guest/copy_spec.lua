-- Every way request data moves moves the right bytes (docs/tuning.md):
-- the memory backend's user copy (inline, ring) and buffer copy; the file
-- backend's zero copy (auto_reg, register) where the kernel has it, and
-- its buffer copy.  A mode the kernel lacks is refused by name, so no
-- mode is skipped silently on either kernel.  A copy that fails fails its
-- own request, and the device serves on and stops cleanly.
local ublk = require "ublk"
local G = require "guest"

local features = ublk.features() or {} -- nil on a host without ublk (busted loads this file there too)
local ZC_NEEDS = { auto_reg = "auto_buf_reg", register = "zero_copy",
  auto_reg_fallback = "auto_buf_reg" }

local function errors(dev) return dev:stats().total.errors end

-- G.device(t), or nil once the refusal of a zero-copy `mode` the kernel
-- lacks has been checked: refused by name, never skipped silently.
local function device_or_refused(t, mode)
  if ZC_NEEDS[mode] and not features[ZC_NEEDS[mode]] then
    local dev, err = ublk.device(t)
    assert.is_nil(dev)
    assert.matches('copy = "' .. mode .. '" needs UBLK_F_', err)
    return nil
  end
  return G.device(t)
end
local LUA_COPY = features.auto_buf_reg and "auto_reg+user_copy"
  or features.user_copy and "user_copy" or "buffer"

describe("#guest copy modes", function()
  after_each(G.no_leftovers)

  local MEMORY_COPY = { inline = "user_copy", ring = "user_copy", buffer = "buffer",
    auto_reg = "auto_reg", register = "register" }
  for _, mode in ipairs{ "default", "inline", "ring", "buffer", "auto_reg", "register" } do
    it("memory, copy = " .. mode .. ": fio crc32c verify, or refused by name", function()
      local t = { size = "64MiB", queues = 2, depth = 64, copy = mode ~= "default" and mode or nil }
      local dev = device_or_refused(t, mode)
      if not dev then return end
      -- by default: zero copy for large requests and user copy for small
      -- ones where the kernel has auto buffer registration
      local want = MEMORY_COPY[mode]
        or (features.auto_buf_reg and "auto_reg+user_copy" or "user_copy")
      assert.are.equal(want, dev:info().copy)
      G.fio_verify(dev.path, 32)
      assert.are.equal(0, errors(dev))
    end)
  end

  -- null moves no data, but its device takes the kernel's path of each
  -- mode (kublk's null -z / --auto_zc / --auto_zc_fallback): fio through
  -- it, no error; under auto_reg_fallback every read and write came with
  -- NEED_REG_BUF and the queue registered it
  local NULL_COPY = { buffer = "buffer", inline = "user_copy", auto_reg = "auto_reg",
    register = "register", auto_reg_fallback = "auto_reg_fallback" }
  for _, mode in ipairs{ "buffer", "inline", "auto_reg", "register", "auto_reg_fallback" } do
    it("null, copy = " .. mode .. ": the kernel's path for it under fio, or refused by name", function()
      local t = { backend = "null", size = "64MiB", queues = 2, depth = 64, copy = mode }
      local dev = device_or_refused(t, mode)
      if not dev then return end
      assert.are.equal(NULL_COPY[mode], dev:info().copy)
      G.must("fio --name=n --filename=%s --ioengine=io_uring --direct=1 --rw=randrw "
        .. "--bsrange=4k-256k --iodepth=32 --numjobs=2 --size=64M --io_size=32M "
        .. "--group_reporting >/dev/null", dev.path)
      local s = dev:stats().total
      assert.truthy(s.reads > 0 and s.writes > 0)
      assert.are.equal(0, s.errors)
      assert.are.equal(mode == "auto_reg_fallback" and s.reads + s.writes or 0, s.reg_fallback)
      if mode == "auto_reg_fallback" then
        dev:close()
        t.batch = true
        local none, err = ublk.device(t)
        assert.is_nil(none)
        assert.matches('copy = "auto_reg_fallback" cannot go with batch = true', err, 1, true)
      end
    end)
  end

  -- NEED_GET_DATA (both kernels): each write comes without its data, and
  -- the queue's second command naming the tag's buffer fetches it
  -- (queue.c); beside user copy the kernel would drop it, so it is refused
  it("need_get_data = true: writes fetched by a second command under fio crc32c verify; refused beside user copy", function()
    local dev = G.device{ size = "64MiB", queues = 2, depth = 64, copy = "buffer",
      need_get_data = true }
    assert.is_true(dev:info().flags.need_get_data)
    G.fio_verify(dev.path, 32)
    assert.are.equal(0, errors(dev))
    dev:close()
    -- the CLI says it in the ready line
    local out = G.must("%s add -t memory --copy buffer -s 16MiB -g", G.bin)
    local id = tonumber(out:match("dev id (%d+):"))
    assert.matches("memory, buffer copy %+ get data", out)
    G.must("%s del -n %d", G.bin, id)
    if features.user_copy then -- the memory backend's default copies by it there
      local d2, err = ublk.device{ size = "16MiB", need_get_data = true }
      assert.is_nil(d2)
      assert.matches("need_get_data = true needs the tag's-buffer copy mode, and the memory backend "
        .. 'copies by user copy or zero copy here: set copy = "buffer"', err, 1, true)
    end
  end)

  it("file: zero copy by default where the kernel has it", function()
    local path = "/tmp/ublk-copy-default.img"
    local dev = G.device{ backend = "file", path = path, size = "64MiB", create = true }
    local want = features.auto_buf_reg and "auto_reg"
      or features.zero_copy and "register" or "buffer"
    assert.are.equal(want, dev:info().copy)
    dev:close()
    os.remove(path)
  end)

  for _, mode in ipairs{ "buffer", "inline", "auto_reg", "register" } do
    it("file on tmpfs, copy = " .. mode .. ": fio crc32c verify, or refused by name", function()
      local path = "/tmp/ublk-copy-" .. mode .. ".img"
      local t = { backend = "file", path = path, size = "64MiB", create = true, queues = 2,
        depth = 64, copy = mode }
      local dev = device_or_refused(t, mode)
      if not dev then
        assert.falsy(G.sh("test -e %s", path), "nothing left behind")
        return
      end
      assert.are.equal(mode == "inline" and "user_copy" or mode, dev:info().copy)
      G.fio_verify(dev.path, 32)
      assert.are.equal(0, errors(dev))
      dev:close()
      os.remove(path)
    end)
  end

  it("file over a block device (O_DIRECT) in its default mode: fio verify, unaligned I/O too",
    function()
      G.must("truncate -s 64M /tmp/ublk-copy-lower.img")
      local loopdev = G.must("losetup -f --show /tmp/ublk-copy-lower.img"):match("%S+")
      local ok, err = pcall(function()
        local dev = G.device{ backend = "file", path = loopdev, queues = 2, depth = 64 }
        G.fio_verify(dev.path, 32)
        -- 512-byte aligned buffers and sizes: the block layer must make
        -- them fit what O_DIRECT on the lower device accepts
        G.fio_verify(dev.path, 32, "--bsrange=512-64k --blockalign=512 --iomem_align=512")
        assert.are.equal(0, errors(dev))
        dev:close()
      end)
      G.sh("losetup -d %s", loopdev)
      os.remove("/tmp/ublk-copy-lower.img")
      assert(ok, err)
    end)

  -- (and under batch I/O where the kernel has it)
  for _, batch in ipairs(features.batch_io and { false, true } or { false }) do
    it("ext4 on the file backend in its default mode" .. (batch and ", batch I/O" or "")
        .. " survives a remount and fsck", function()
      local path, mnt = "/tmp/ublk-copy-ext4.img", "/tmp/ublk-copy-mnt"
      local dev = G.device{ backend = "file", path = path, size = "128MiB", create = true,
        batch = batch }
      G.must("mkfs.ext4 -q -F %s", dev.path)
      G.must("mkdir -p %s && mount %s %s", mnt, dev.path, mnt)
      G.must("for i in $(seq 1 24); do head -c $((i * 37000)) /dev/urandom > %s/f$i; done", mnt)
      local before = G.must("cd %s && md5sum f* | sort", mnt)
      G.must("umount %s", mnt)
      G.must("fsck.ext4 -fn %s", dev.path)
      G.must("mount %s %s", dev.path, mnt)
      G.must("echo 3 > /proc/sys/vm/drop_caches")
      assert.are.equal(before, G.must("cd %s && md5sum f* | sort", mnt))
      G.must("umount %s", mnt)
      assert.are.equal(0, errors(dev), "mode " .. dev:info().copy)
      dev:close()
      os.remove(path)
    end)
  end

  -- a Lua backend's copy: the best the kernel has, or the one it names
  local LUA_NAMED = { buffer = "buffer", inline = "user_copy", auto_reg = "auto_reg+user_copy" }
  for _, mode in ipairs{ "default", "buffer", "inline", "auto_reg" } do
    it("Lua backend, copy = " .. mode .. ": req:copy and req.buf both move the right bytes", function()
      local size = 32 * 1024 * 1024
      local mem = ublk.shared(size)
      local copy = mode ~= "default" and mode or nil
      if ZC_NEEDS[mode] and not features[ZC_NEEDS[mode]] then
        local dev, err = ublk.device{ backend = ublk.backend { size = size, copy = copy,
          read = function() end } }
        assert.is_nil(dev)
        assert.matches('copy = "' .. mode .. '" needs UBLK_F_', err)
        return
      end
      local dev = G.device{ queues = 2, depth = 64, backend = ublk.backend {
        size = size, store = mem, copy = copy,
        -- odd sectors of every 64 KiB go through req.buf, the rest by req:copy
        read = function(self, req)
          if req.offset % 131072 >= 65536 then
            require("ffi").copy(req.buf, self.store.ptr + req.offset, req.length)
            return
          end
          return req:copy(self.store.ptr + req.offset)
        end,
        write = function(self, req)
          if req.offset % 131072 >= 65536 then
            require("ffi").copy(self.store.ptr + req.offset, req.buf, req.length)
            return
          end
          return req:copy(self.store.ptr + req.offset)
        end,
      } }
      assert.are.equal(LUA_NAMED[mode] or LUA_COPY, dev:info().copy)
      G.fio_verify(dev.path, 16)
      assert.are.equal(0, errors(dev))
    end)
  end

  -- requests of 64 KiB and more go by zero copy where the kernel has
  -- auto_reg: an async handler waits for the copy, a sync one hands over
  for _, async in ipairs{ false, true } do
    it("Lua backend, async = " .. tostring(async) .. ": req:copy of whole requests", function()
      local size = 32 * 1024 * 1024
      local dev = G.device{ queues = 2, depth = 64, backend = ublk.backend {
        size = size, store = ublk.shared(size), async = async,
        read = function(self, req) return req:copy(self.store.ptr + req.offset) end,
        write = function(self, req)
          local n, err = req:copy(self.store.ptr + req.offset)
          if not n then return nil, err end
          return n
        end,
      } }
      assert.are.equal(LUA_COPY, dev:info().copy)
      G.fio_verify(dev.path, 16)
      assert.are.equal(0, errors(dev))
    end)
  end

  it("Lua backend: a req:copy the kernel refuses fails that request only", function()
    local mem = ublk.shared("8MiB")
    local dev = G.device{ backend = ublk.backend {
      size = "8MiB", store = mem,
      read = function(self, req)
        -- the 4 KiB at 1 MiB copy from an address nothing is mapped at
        local from = req.offset == 1048576 and require("ffi").cast("uint8_t *", 4096)
          or self.store.ptr + req.offset
        return req:copy(from)
      end,
      write = function(self, req) return req:copy(self.store.ptr + req.offset) end,
    } }
    local md5 = G.write_random_at(dev.path, 65536, 65536)
    assert.falsy(G.sh("dd if=%s bs=4096 skip=256 count=1 iflag=direct of=/dev/null status=none",
      dev.path))
    assert.are.equal(1, errors(dev))
    assert.are.equal(md5, G.md5_at(dev.path, 65536, 65536), "the device serves on")
    local t0 = G.now()
    dev:close()
    assert.truthy(G.now() - t0 < 10, "stopping waited on a stranded request")
  end)

  -- A store is reserved whole when the device is made, so a full file
  -- system cannot fail a copy; a store someone truncates under the server
  -- can: the kernel's copy into a page past the file's end fails.  That
  -- request fails; nothing is stranded.  (And under batch I/O, where the
  -- error goes back in the same array as its neighbours' results.)
  local failing = { { "inline" }, { "ring" } }
  if features.batch_io then failing[3] = { "inline", true } end
  for _, case in ipairs(failing) do
    local mode, batch = case[1], case[2]
    it("memory, copy = " .. mode .. (batch and ", batch I/O" or "")
        .. ": a failed copy fails that request only", function()
      local dir = "/tmp/ublk-small-" .. mode
      G.must("mkdir -p %s && mount -t tmpfs -o size=32M none %s", dir, dir)
      local ok, err = pcall(function()
        local dev = G.device{ size = "16MiB", recovery = false, batch = batch,
          backend = ublk.memory{ copy = mode, store = dir .. "/store" } }
        local md5 = G.write_random_at(dev.path, 0, 1024 * 1024)
        G.must("truncate -s 1M %s/store", dir)
        local wrote = G.sh("dd if=/dev/zero of=%s bs=1M count=15 seek=1 oflag=direct status=none",
          dev.path)
        assert.falsy(wrote, "writing past what the store can hold must fail")
        assert.truthy(errors(dev) > 0)
        assert.are.equal(md5, G.md5_at(dev.path, 0, 1024 * 1024), "the device serves on")
        local t0 = G.now()
        dev:close()
        assert.truthy(G.now() - t0 < 10, "stopping waited on a stranded request")
      end)
      G.sh("umount %s", dir)
      assert(ok, err)
    end)
  end
end)
