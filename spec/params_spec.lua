-- Spec for ublk.params: parsing, formatting and validation of device
-- parameters.  Pure Lua, no device needed; runs under LuaJIT.

local params = require "ublk.params"

local KiB, MiB, GiB, TiB = 1024, 1024 ^ 2, 1024 ^ 3, 1024 ^ 4

-- Calls validate from a Lua function (so level 2 has a position to
-- report) and returns the error message; fails the test if none.
local function verr(t, limits)
  -- No "return": a tail call would drop this frame and level 2 with it.
  local ok, e = pcall(function() params.validate(t, limits) end)
  assert.is_false(ok, "expected validate to raise")
  assert.are.equal("string", type(e))
  return e
end

-- Plain-text containment, so messages with quotes/brackets need no escaping.
local function has(msg, text)
  assert.matches(text, msg, 1, true)
end

local function rejected(v)
  local bytes, err = params.parse_size(v)
  assert.is_nil(bytes)
  assert.are.equal("string", type(err))
  return err
end

describe("ublk.params", function()
  describe("parse_size", function()
    it("accepts non-negative integer numbers as bytes", function()
      assert.are.equal(0, params.parse_size(0))
      assert.are.equal(4096, params.parse_size(4096))
      assert.are.equal(2 ^ 53, params.parse_size(2 ^ 53))
    end)

    it("accepts plain digit strings", function()
      assert.are.equal(4096, params.parse_size("4096"))
      assert.are.equal(0, params.parse_size("0"))
      assert.are.equal(7, params.parse_size("007"))
    end)

    it("accepts K/M/G/T with iB or no suffix, all powers of 1024", function()
      assert.are.equal(512 * KiB, params.parse_size("512K"))
      assert.are.equal(512 * KiB, params.parse_size("512KiB"))
      assert.are.equal(256 * MiB, params.parse_size("256M"))
      assert.are.equal(256 * MiB, params.parse_size("256MiB"))
      assert.are.equal(GiB, params.parse_size("1G"))
      assert.are.equal(GiB, params.parse_size("1GiB"))
      assert.are.equal(2 * TiB, params.parse_size("2T"))
      assert.are.equal(2 * TiB, params.parse_size("2TiB"))
      assert.are.equal(12, params.parse_size("12B"))
    end)

    it("is case-insensitive and allows spaces around the unit", function()
      assert.are.equal(512 * KiB, params.parse_size("512k"))
      assert.are.equal(256 * MiB, params.parse_size("256 mib"))
      assert.are.equal(GiB, params.parse_size("1 giB"))
      assert.are.equal(2 * TiB, params.parse_size("  2   TIB  "))
    end)

    it("accepts fractions that give a whole number of bytes", function()
      assert.are.equal(1.5 * GiB, params.parse_size("1.5G"))
      assert.are.equal(512, params.parse_size("0.5K"))
      assert.are.equal(1280, params.parse_size("1.25KiB"))
      assert.are.equal(64, params.parse_size("0.0625K"))
      assert.are.equal(GiB, params.parse_size("1.000G"))
      assert.are.equal(1, params.parse_size("0.0000000000009094947017729282379150390625T"))
    end)

    it("rejects fractions that are not a whole number of bytes", function()
      has(rejected("1.1K"), "whole number of bytes")  -- 1126.4
      has(rejected("1.5"), "whole number of bytes")
      has(rejected("0.1B"), "whole number of bytes")
      has(rejected(1.5), "whole number of bytes")
      -- A double would round this to exactly 1 GiB; exact parsing must not.
      has(rejected("1.00000000000000000001G"), "whole number of bytes")
    end)

    it("rejects negatives, NaN and infinities", function()
      has(rejected(-1), "negative")
      has(rejected("-1"), "negative")
      has(rejected(" -1G"), "negative")
      has(rejected(0 / 0), "NaN")
      has(rejected(math.huge), "finite")
      has(rejected(-math.huge), "negative")
    end)

    it("refuses KB/MB/GB/TB, naming the spellings that work (dd reads them as powers of 1000)", function()
      has(rejected("1GB"), "unit 'GB' is ambiguous")
      has(rejected("1GB"), "write 1GiB (or 1G) for powers of 1024, or the number of bytes")
      has(rejected("512kb"), "write 512KiB (or 512K)")
      has(rejected("1.5 MB"), "write 1.5MiB (or 1.5M)")
      has(rejected("2TB"), "unit 'TB'")
    end)

    it("rejects empty strings, garbage and unknown units", function()
      has(rejected(""), "empty")
      has(rejected("   "), "empty")
      has(rejected("12X"), "unknown unit 'X'")
      has(rejected("12 PiB"), "unknown unit 'PiB'")
      has(rejected("G"), "not a size")
      has(rejected("1..2M"), "not a size")
      has(rejected("1.M"), "not a size")
      has(rejected(".5M"), "not a size")
      has(rejected("1 2M"), "not a size")
      has(rejected("0x10"), "not a size")
      has(rejected("1e3"), "not a size")
    end)

    it("rejects non-number, non-string values", function()
      has(rejected(true), "got a boolean")
      has(rejected({}), "got a table")
      has(rejected(nil), "got a nil")
    end)

    it("accepts exactly 2^53 bytes and rejects anything larger", function()
      assert.are.equal(2 ^ 53, params.parse_size("9007199254740992"))
      assert.are.equal(2 ^ 53, params.parse_size("8192T"))
      assert.are.equal(2 ^ 53, params.parse_size("0009007199254740992"))
      -- tonumber() would round this down to 2^53: must be caught as text.
      has(rejected("9007199254740993"), "2^53")
      has(rejected("8192.5T"), "2^53")
      has(rejected("8193T"), "2^53")
      has(rejected("99999999999999999999999"), "2^53")
      has(rejected(2 ^ 53 + 2), "2^53")
      has(rejected(2 ^ 60), "2^53")
    end)

    it("keeps large sizes exact", function()
      assert.are.equal(2 ^ 53 - 1, params.parse_size("9007199254740991"))
      assert.are.equal(8191 * TiB + 512, params.parse_size(8191 * TiB + 512))
      assert.are.equal(8191.5 * TiB, params.parse_size("8191.5T"))
    end)
  end)

  describe("format_size", function()
    it("uses the largest binary unit that divides evenly", function()
      assert.are.equal("256 MiB", params.format_size(256 * MiB))
      assert.are.equal("1 GiB", params.format_size(GiB))
      assert.are.equal("512 KiB", params.format_size(512 * KiB))
      assert.are.equal("4 KiB", params.format_size(4096))
      assert.are.equal("2 TiB", params.format_size(2 * TiB))
      assert.are.equal("8192 TiB", params.format_size(2 ^ 53))
    end)

    it("falls back to bytes rather than rounding", function()
      assert.are.equal("4097 B", params.format_size(4097))
      assert.are.equal("1536 MiB", params.format_size(1.5 * GiB))
      assert.are.equal("512 B", params.format_size(512))
      assert.are.equal("0 B", params.format_size(0))
      assert.are.equal("9007199254740991 B", params.format_size(2 ^ 53 - 1))
    end)
  end)

  describe("copy", function()
    it("takes each backend's own modes and names them when refusing", function()
      assert.are.equal("ring", params.validate({ size = "1M", copy = "ring" }).copy)
      assert.are.equal("auto_reg",
        params.validate({ backend = "file", path = "/x", copy = "auto_reg" }).copy)
      has(verr({ size = "1M", copy = "zero" }),
        [[bad parameter 'copy' = "zero": for the memory backend must be "inline", "ring", "buffer", "auto_reg" or "register"]])
      has(verr({ backend = "file", path = "/x", copy = "ring" }),
        [[for the file backend must be "buffer", "inline", "auto_reg" or "register"]])
      has(verr({ backend = "null", size = "1M", copy = "ring" }),
        [[for the null backend must be "buffer", "inline", "auto_reg", "register" or ]]
        .. [["auto_reg_fallback"]])
      has(verr({ backend = "nbd", uri = "nbd://h/", copy = "buffer" }),
        [[applies to the memory, null and file backends only (backend "nbd")]])
      has(verr({ size = "1M", copy = true }), [[bad parameter 'copy' = true]])
    end)
  end)

  describe("fields and defaults", function()
    it("lists the known fields sorted", function()
      assert.are.same({
        "backend", "batch", "block_size", "client", "conf", "connect_timeout", "connections",
        "copy", "create", "depth", "direct", "discard", "dma_align", "exclusive", "id", "image",
        "io_desc_size", "latency", "max_io", "max_segment_size", "max_segments", "name", "need_get_data",
        "no_auto_part_scan",
        "osd_timeout", "path", "pin", "poll_us", "queues", "read_only", "reconnect", "recovery",
        "segment_boundary", "shmem_zc", "size", "store", "threads", "timeout", "uri",
      }, params.fields)
    end)

    it("takes the block layer's limits by the kernel's rules, absent unless given", function()
      local p = params.validate({ size = "1MiB" })
      assert.is_nil(p.dma_align or p.max_segments or p.max_segment_size or p.segment_boundary
        or p.no_auto_part_scan)
      p = params.validate({ size = "1MiB", dma_align = 512, max_segments = 4,
        max_segment_size = "8KiB", segment_boundary = "64KiB", no_auto_part_scan = true })
      assert.are.same({ 512, 4, 8192, 65536, true }, { p.dma_align, p.max_segments,
        p.max_segment_size, p.segment_boundary, p.no_auto_part_scan })
      local function refused(t, msg)
        t.size = "1MiB"
        local ok, err = pcall(params.validate, t)
        assert.is_false(ok)
        assert.are.equal(msg, err)
      end
      refused({ dma_align = 3 }, "ublk: bad parameter 'dma_align' = 3: must be a power of two "
        .. "from 1 to 4096 bytes (a page)")
      refused({ dma_align = 8192 }, "ublk: bad parameter 'dma_align' = 8192: must be a power "
        .. "of two from 1 to 4096 bytes (a page)")
      refused({ max_segments = 0 }, "ublk: bad parameter 'max_segments' = 0: must be an "
        .. "integer from 1 to 65535")
      refused({ segment_boundary = 2048 }, "ublk: bad parameter 'segment_boundary' = 2048: "
        .. "must be a power of two from 4 KiB to 4 PiB (no segment crosses it)")
      refused({ max_segment_size = 1024 }, "ublk: bad parameter 'max_segment_size' = 1024: "
        .. "must be from 4096 to 4294967295 bytes")
      refused({ max_segment_size = "128KiB", segment_boundary = "64KiB" }, "ublk: bad "
        .. "parameter 'max_segment_size' = \"128KiB\": must be from 4096 to 65535 bytes "
        .. "(segment_boundary - 1: no segment crosses it)")
      refused({ no_auto_part_scan = 1 }, "ublk: bad parameter 'no_auto_part_scan' = 1: must "
        .. "be true or false")
    end)

    it("takes recovery as reissue, queue, fail or false (true is reissue)", function()
      for _, v in ipairs({ "reissue", "queue", "fail", false }) do
        assert.are.equal(v, params.validate({ size = "1MiB", recovery = v }).recovery)
      end
      assert.are.equal("reissue", params.validate({ size = "1MiB", recovery = true }).recovery)
      assert.is_nil(params.validate({ size = "1MiB" }).recovery) -- the kernel decides
      assert.has_error(function() params.validate({ size = "1MiB", recovery = "yes" }) end,
        [[ublk: bad parameter 'recovery' = "yes": must be "reissue", "queue", "fail" or false]])
    end)

    it("exports the defaults in normalised form", function()
      assert.are.same({
        block_size = 512, queues = 1, depth = 128, max_io = 512 * KiB,
        read_only = false, discard = true, pin = "auto", id = -1, backend = "memory",
        latency = true, poll_us = 0, batch = false, need_get_data = false, threads = 1,
      }, params.defaults)
    end)

    it("is not affected by callers editing the exported tables", function()
      local saved = params.defaults.queues
      params.defaults.queues = 7
      local ok, p = pcall(params.validate, { size = "1M" })
      params.defaults.queues = saved
      assert.is_true(ok)
      assert.are.equal(1, p.queues)
    end)
  end)

  describe("validate", function()
    it("fills in every default", function()
      assert.are.same({
        size = MiB, block_size = 512, queues = 1, depth = 128,
        max_io = 512 * KiB, read_only = false, discard = true, pin = "auto", id = -1,
        backend = "memory", latency = true, poll_us = 0, batch = false, need_get_data = false,
        threads = 1,
      }, params.validate({ size = "1MiB" }))
    end)

    it("normalises every field", function()
      local be = { name = "file", size = 4 * GiB }
      local p = params.validate({
        size = "2G", block_size = "4K", queues = 4, depth = 64,
        max_io = "1MiB", read_only = true, discard = false, pin = false, id = 3,
        backend = be, path = "/tmp/disk.img", direct = true, create = true, name = "test",
        latency = false, recovery = "queue", poll_us = 200, batch = true, threads = 2,
      })
      assert.is_false(p.need_get_data)
      p.need_get_data = nil
      assert.are.same({
        size = 2 * GiB, block_size = 4096, queues = 4, depth = 64,
        max_io = MiB, read_only = true, discard = false, pin = false, id = 3,
        backend = be, path = "/tmp/disk.img", direct = true, create = true, name = "test",
        latency = false, recovery = "queue", poll_us = 200, batch = true, threads = 2,
      }, p)
    end)

    it("takes need_get_data as a bool, never beside batch", function()
      assert.is_true(params.validate({ size = "1MiB", need_get_data = true }).need_get_data)
      assert.has_error(function() params.validate({ size = "1MiB", need_get_data = "yes" }) end,
        [[ublk: bad parameter 'need_get_data' = "yes": must be true or false]])
      assert.has_error(function()
        params.validate({ size = "1MiB", need_get_data = true, batch = true })
      end, "ublk: bad parameter 'need_get_data' = true: cannot go with batch = true (batch I/O"
        .. " has no NEED_GET_DATA command)")
    end)

    it("takes io_desc_size as a multiple of 8 bytes from 24 to 256, absent unless given", function()
      assert.is_nil(params.validate({ size = "1MiB" }).io_desc_size)
      for _, n in ipairs({ 24, 32, 256 }) do
        assert.are.equal(n, params.validate({ size = "1MiB", io_desc_size = n }).io_desc_size)
      end
      assert.has_error(function() params.validate({ size = "1MiB", io_desc_size = 30 }) end,
        "ublk: bad parameter 'io_desc_size' = 30: must be a multiple of 8 from 24 to 256 (bytes)")
      for _, n in ipairs({ 16, 264, 2.5 }) do
        assert.has_error(function() params.validate({ size = "1MiB", io_desc_size = n }) end)
      end
    end)

    it("takes threads from 1 to the depth", function()
      assert.are.equal(3, params.validate({ size = "1MiB", threads = 3 }).threads)
      assert.has_error(function() params.validate({ size = "1MiB", depth = 4, threads = 5 }) end,
        "ublk: bad parameter 'threads' = 5: must be an integer from 1 to 4")
      assert.has_error(function() params.validate({ size = "1MiB", threads = 0 }) end)
    end)

    it("takes shmem_zc as a path or a list of up to 16, never beside recovery or batch", function()
      assert.are.same({ "/dev/shm/a" }, params.validate({ size = "1MiB", shmem_zc = "/dev/shm/a" }).shmem_zc)
      assert.are.same({ "/a", "/b" }, params.validate({ size = "1MiB", shmem_zc = { "/a", "/b" } }).shmem_zc)
      assert.has_error(function() params.validate({ size = "1MiB", shmem_zc = "buf" }) end,
        [[ublk: bad parameter 'shmem_zc' = "buf": must be an absolute path (a file in /dev/shm or hugetlbfs)]])
      assert.has_error(function() params.validate({ size = "1MiB", shmem_zc = {} }) end)
      local many = {}
      for i = 1, 17 do many[i] = "/f" .. i end
      assert.has_error(function() params.validate({ size = "1MiB", shmem_zc = many }) end)
      assert.has_error(function()
        params.validate({ size = "1MiB", shmem_zc = "/a", recovery = "reissue" })
      end, [[ublk: bad parameter 'shmem_zc' = "/a": cannot go with recovery (a recovering server]]
        .. [[ would not know the buffers the dead one registered): set recovery = false]])
      assert.has_error(function() params.validate({ size = "1MiB", shmem_zc = "/a", batch = true }) end,
        [[ublk: bad parameter 'shmem_zc' = "/a": cannot go with batch = true]])
      assert.is_false(params.validate({ size = "1MiB", shmem_zc = "/a", recovery = false }).recovery)
    end)

    it("returns a new table and does not mutate its input", function()
      local t = { size = "256M", queues = 2 }
      local p = params.validate(t)
      assert.are_not.equal(t, p)
      assert.are.same({ size = "256M", queues = 2 }, t)
      assert.are.equal(256 * MiB, p.size)
    end)

    it("passes a backend object through untouched", function()
      local be = { size = MiB, read = function() end }
      local p = params.validate({ backend = be })
      assert.are.equal(be, p.backend)
      assert.are.same({ size = MiB, read = be.read }, be)
    end)

    it("raises at the caller's level, prefixed with 'ublk:'", function()
      local e = verr({ size = "1M", queues = 0 })
      has(e, "params_spec.lua:")
      has(e, "ublk: bad parameter 'queues'")
    end)

    it("rejects a non-table", function()
      has(verr("1G"), "ublk: device parameters must be a table, got \"1G\"")
      has(verr(nil), "must be a table, got nil")
    end)

    describe("size", function()
      it("is required", function()
        has(verr({}), "ublk: missing parameter 'size'")
        has(verr({ backend = "memory" }), "missing parameter 'size'")
        has(verr({ backend = {} }), "missing parameter 'size'")
      end)

      it("can come from the backend object", function()
        assert.are.equal(8 * MiB,
          params.validate({ backend = { size = 8 * MiB } }).size)
        assert.are.equal(8 * MiB,
          params.validate({ backend = { size = "8MiB" } }).size)
      end)

      it("prefers an explicit size over the backend's", function()
        assert.are.equal(MiB,
          params.validate({ size = MiB, backend = { size = 8 * MiB } }).size)
      end)

      it("names backend.size when the backend's size is bad", function()
        has(verr({ backend = { size = 1000 } }),
          "bad parameter 'backend.size' = 1000: must be a positive multiple of block_size (512)")
        has(verr({ backend = { size = "huge" } }),
          "bad parameter 'backend.size' = \"huge\": not a size")
      end)

      it("must be positive", function()
        has(verr({ size = 0 }),
          "ublk: bad parameter 'size' = 0: must be a positive multiple of block_size (512)")
        has(verr({ size = -512 }), "bad parameter 'size' = -512: must not be negative")
      end)

      it("must be a multiple of block_size", function()
        assert.are.equal(4096, params.validate({ size = 4096, block_size = 4096 }).size)
        has(verr({ size = 6144, block_size = 4096 }),
          "bad parameter 'size' = 6144: must be a positive multiple of block_size (4096)")
        has(verr({ size = 1000 }), "'size' = 1000: must be a positive multiple")
      end)

      it("reports parse errors with the field and value", function()
        has(verr({ size = "12X" }), "bad parameter 'size' = \"12X\": unknown unit 'X'")
        has(verr({ size = "1..2M" }), "bad parameter 'size' = \"1..2M\": not a size")
        has(verr({ size = 1.5 }), "bad parameter 'size' = 1.5: is not a whole number of bytes")
        has(verr({ size = true }), "bad parameter 'size' = true: expected a number")
      end)

      it("accepts 2^53 and rejects more", function()
        assert.are.equal(2 ^ 53, params.validate({ size = 2 ^ 53 }).size)
        has(verr({ size = "9007199254740993" }), "'size' = \"9007199254740993\": is larger than 2^53")
        has(verr({ size = 2 ^ 54 }), "'size' = 18014398509481984: is larger than 2^53")
      end)
    end)

    describe("block_size", function()
      local rule = "must be a power of two from 512 to 4096"

      it("accepts powers of two from 512 to 4096, as numbers or strings", function()
        for _, bs in ipairs({ 512, 1024, 2048, 4096 }) do
          assert.are.equal(bs, params.validate({ size = "1M", block_size = bs }).block_size)
        end
        assert.are.equal(4096, params.validate({ size = "1M", block_size = "4K" }).block_size)
        assert.are.equal(512, params.validate({ size = "1M", block_size = "512" }).block_size)
      end)

      it("rejects other values", function()
        has(verr({ size = "1M", block_size = 1000 }),
          "ublk: bad parameter 'block_size' = 1000: " .. rule)
        has(verr({ size = "1M", block_size = 256 }), "'block_size' = 256: " .. rule)
        has(verr({ size = "1M", block_size = 8192 }), "'block_size' = 8192: " .. rule)
        has(verr({ size = "1M", block_size = "8K" }), "'block_size' = \"8K\": " .. rule)
        has(verr({ size = "1M", block_size = 0 }), "'block_size' = 0: " .. rule)
        has(verr({ size = "1M", block_size = "big" }), "'block_size' = \"big\": not a size")
      end)
    end)

    describe("queues", function()
      it("accepts 1 up to limits.max_queues (default 64)", function()
        assert.are.equal(1, params.validate({ size = "1M", queues = 1 }).queues)
        assert.are.equal(64, params.validate({ size = "1M", queues = 64 }).queues)
        assert.are.equal(8, params.validate({ size = "1M", queues = 8 }, { max_queues = 8 }).queues)
      end)

      it("refuses a poll_us that is negative, fractional or over 10 ms", function()
        has(verr({ size = "1M", poll_us = -1 }),
          "ublk: bad parameter 'poll_us' = -1: must be an integer from 0 to 10000")
        has(verr({ size = "1M", poll_us = 10001 }), "'poll_us' = 10001: must be an integer from 0 to 10000")
        has(verr({ size = "1M", poll_us = 1.5 }), "'poll_us' = 1.5: must be an integer")
      end)

      it('takes pin as true, false or "auto"', function()
        for _, v in ipairs{ true, false, "auto" } do
          assert.are.equal(v, params.validate({ size = "1M", pin = v }).pin)
        end
        has(verr({ size = "1M", pin = "yes" }),
          [[ublk: bad parameter 'pin' = "yes": must be true, false or "auto"]])
        has(verr({ size = "1M", pin = 1 }), [['pin' = 1: must be true, false or "auto"]])
      end)

      it("takes batch as a boolean only", function()
        has(verr({ size = "1M", batch = "yes" }), [[ublk: bad parameter 'batch' = "yes": must be true or false]])
      end)

      it("refuses values outside 1..max_queues", function()
        has(verr({ size = "1M", queues = 0 }),
          "ublk: bad parameter 'queues' = 0: must be an integer from 1 to 64")
        has(verr({ size = "1M", queues = 65 }), "'queues' = 65: must be an integer from 1 to 64")
        has(verr({ size = "1M", queues = 9 }, { max_queues = 8 }),
          "'queues' = 9: must be an integer from 1 to 8")
      end)

      it("must be an integer number", function()
        has(verr({ size = "1M", queues = 1.5 }), "'queues' = 1.5: must be an integer")
        has(verr({ size = "1M", queues = "2" }), "'queues' = \"2\": must be an integer")
        has(verr({ size = "1M", queues = 0 / 0 }), "'queues' = ")
        has(verr({ size = "1M", queues = math.huge }), "'queues' = inf: must be an integer")
      end)
    end)

    describe("depth", function()
      it("accepts 1 to 4096", function()
        assert.are.equal(128, params.validate({ size = "1M" }).depth)
        assert.are.equal(1, params.validate({ size = "1M", depth = 1 }).depth)
        assert.are.equal(4096, params.validate({ size = "1M", depth = 4096 }).depth)
      end)

      it("refuses 0, 4097 and non-integers", function()
        has(verr({ size = "1M", depth = 0 }),
          "ublk: bad parameter 'depth' = 0: must be an integer from 1 to 4096")
        has(verr({ size = "1M", depth = 4097 }), "'depth' = 4097: must be an integer from 1 to 4096")
        has(verr({ size = "1M", depth = 2.5 }), "'depth' = 2.5: must be an integer")
        has(verr({ size = "1M", depth = "64" }), "'depth' = \"64\": must be an integer")
      end)

      it("honours limits.max_depth", function()
        has(verr({ size = "1M", depth = 256 }, { max_depth = 128 }),
          "'depth' = 256: must be an integer from 1 to 128")
      end)
    end)

    describe("max_io", function()
      local rule = "must be a multiple of 4096 from 4 KiB to 32 MiB"

      it("defaults to 512 KiB and accepts sizes", function()
        assert.are.equal(512 * KiB, params.validate({ size = "1M" }).max_io)
        assert.are.equal(4096, params.validate({ size = "1M", max_io = 4096 }).max_io)
        assert.are.equal(32 * MiB, params.validate({ size = "1M", max_io = "32MiB" }).max_io)
        assert.are.equal(MiB, params.validate({ size = "1M", max_io = "1 m" }).max_io)
      end)

      it("refuses sizes outside the range or not 4 KiB aligned", function()
        has(verr({ size = "1M", max_io = 2048 }), "ublk: bad parameter 'max_io' = 2048: " .. rule)
        has(verr({ size = "1M", max_io = 6000 }), "'max_io' = 6000: " .. rule)
        has(verr({ size = "1M", max_io = "33M" }), "'max_io' = \"33M\": " .. rule)
        has(verr({ size = "1M", max_io = "2K" }), "'max_io' = \"2K\": " .. rule)
        has(verr({ size = "1M", max_io = "lots" }), "'max_io' = \"lots\": not a size")
      end)

      it("honours limits.max_io_max", function()
        has(verr({ size = "1M", max_io = "2M" }, { max_io_max = MiB }),
          "'max_io' = \"2M\": must be a multiple of 4096 from 4 KiB to 1 MiB")
      end)
    end)

    describe("booleans", function()
      it("default read_only=false, discard=true; direct and create left to the backend", function()
        local p = params.validate({ size = "1M" })
        assert.are.equal(false, p.read_only)
        assert.are.equal(true, p.discard)
        assert.is_nil(p.direct)
        assert.is_nil(p.create)
      end)

      it("keep explicit values", function()
        local p = params.validate({ size = "1M", read_only = true, discard = false, direct = true,
          backend = "file", path = "/x" })
        assert.are.equal(true, p.read_only)
        assert.are.equal(false, p.discard)
        assert.are.equal(true, p.direct)
      end)

      it("reject non-booleans", function()
        has(verr({ size = "1M", read_only = 1 }),
          "ublk: bad parameter 'read_only' = 1: must be true or false")
        has(verr({ size = "1M", discard = "yes" }), "'discard' = \"yes\": must be true or false")
        has(verr({ backend = "file", path = "/x", direct = 0 }),
          "'direct' = 0: for the file backend must be true or false")
        has(verr({ backend = "file", path = "/x", create = "yes" }),
          "'create' = \"yes\": for the file backend must be true or false")
      end)
    end)

    describe("id", function()
      it("accepts -1 (kernel picks) up to 1048575", function()
        assert.are.equal(-1, params.validate({ size = "1M" }).id)
        assert.are.equal(0, params.validate({ size = "1M", id = 0 }).id)
        assert.are.equal(1048575, params.validate({ size = "1M", id = 1048575 }).id)
      end)

      it("refuses values outside -1..1048575", function()
        has(verr({ size = "1M", id = -2 }),
          "ublk: bad parameter 'id' = -2: must be an integer from -1 to 1048575")
        has(verr({ size = "1M", id = 1048576 }), "'id' = 1048576: must be an integer from -1 to 1048575")
        has(verr({ size = "1M", id = "0" }), "'id' = \"0\": must be an integer")
        has(verr({ size = "1M", id = 0.5 }), "'id' = 0.5: must be an integer")
      end)
    end)

    describe("backend", function()
      it("defaults to the registry's first (\"memory\") and accepts the runtime's names", function()
        assert.are.equal("memory", params.validate({ size = "1M" }).backend)
        assert.are.equal("null", params.validate({ size = "1M", backend = "null" }).backend)
        local decls = {}
        for i, name in ipairs({ "memory", "_x", "my-backend_2", "Zero" }) do
          decls[i] = { name = name, options = {} }
        end
        for _, name in ipairs({ "_x", "my-backend_2", "Zero" }) do
          assert.are.equal(name, params.validate({ size = "1M", backend = name },
            { backends = decls }).backend)
        end
        has(verr({ size = "1M", backend = "nul" }),
          "unknown backend 'nul' (memory, null, file, nbd, rbd, plugin, or ublk.backend{...})")
      end)

      it("needs a path for the file backend, and takes the size from the file", function()
        has(verr({ size = "1M", backend = "file" }), "missing parameter 'path'")
        local p = params.validate({ backend = "file", path = "/tmp/x" })
        assert.are.equal(0, p.size)
        assert.are.equal(0, params.validate({ backend = { name = "file", path = "/x" } }).size)
      end)

      it("rejects bad names and types", function()
        local rule = "must be a backend name"
        has(verr({ size = "1M", backend = "" }), "ublk: bad parameter 'backend' = \"\": " .. rule)
        has(verr({ size = "1M", backend = "2fast" }), "'backend' = \"2fast\": " .. rule)
        has(verr({ size = "1M", backend = "-x" }), "'backend' = \"-x\": " .. rule)
        has(verr({ size = "1M", backend = "a b" }), "'backend' = \"a b\": " .. rule)
        has(verr({ size = "1M", backend = "../x" }), "'backend' = \"../x\": " .. rule)
        has(verr({ size = "1M", backend = 3 }), "'backend' = 3: " .. rule)
        has(verr({ size = "1M", backend = print }), "'backend' = <function>: " .. rule)
      end)
    end)

    describe("path and name", function()
      it("are absent unless given", function()
        local p = params.validate({ size = "1M" })
        assert.is_nil(p.path)
        assert.is_nil(p.name)
      end)

      it("pass strings through", function()
        local p = params.validate({ size = "1M", backend = "file", path = "/dev/shm/x", name = "disk0" })
        assert.are.equal("/dev/shm/x", p.path)
        assert.are.equal("disk0", p.name)
      end)

      it("reject bad values", function()
        has(verr({ backend = "file", path = "" }),
          "ublk: bad parameter 'path' = \"\": for the file backend must be a non-empty string")
        has(verr({ backend = "file", path = 5 }), "'path' = 5: for the file backend must be a")
        has(verr({ size = "1M", path = "/x" }),
          "'path' = \"/x\": applies to the file and plugin backends only (backend \"memory\")")
        has(verr({ size = "1M", name = false }), "'name' = false: must be a string")
      end)
    end)

    describe("unknown fields", function()
      it("suggests a close known name", function()
        has(verr({ sise = "1M" }), "ublk: unknown parameter 'sise' (did you mean 'size'?)")
        has(verr({ size = "1M", blocksize = 4096 }), "unknown parameter 'blocksize' (did you mean 'block_size'?)")
        has(verr({ size = "1M", readonly = true }), "(did you mean 'read_only'?)")
        has(verr({ size = "1M", queue = 2 }), "(did you mean 'queues'?)")
        has(verr({ size = "1M", Depth = 2 }), "(did you mean 'depth'?)")
        has(verr({ size = "1M", max_ios = 2 }), "(did you mean 'max_io'?)")
      end)

      it("lists the known names when nothing is close", function()
        local e = verr({ size = "1M", cpus = { 0, 1 } })
        has(e, "ublk: unknown parameter 'cpus' (known: backend, batch, block_size, client, conf, connect_timeout,")
        assert.is_nil(e:find("did you mean", 1, true))
        -- Too short to be a typo of anything, though within 2 edits of 'id'.
        e = verr({ size = "1M", x = 1 })
        has(e, "unknown parameter 'x' (known: ")
      end)

      it("rejects positional entries", function()
        has(verr({ "1M" }), "ublk: unknown parameter [1] (parameters are named fields:")
      end)

      it("reports the same key on every run", function()
        local t = { size = "1M", zzz_unknown = 1, aaa_unknown = 2, mmm_unknown = 3 }
        for _ = 1, 5 do
          has(verr(t), "unknown parameter 'aaa_unknown'")
        end
      end)
    end)

    describe("nbd", function()
      it("takes the size from the server and needs a uri", function()
        local p = params.validate({ backend = "nbd", uri = "nbd://127.0.0.1:10809/x" })
        assert.are.equal(0, p.size)
        assert.are.equal("nbd://127.0.0.1:10809/x", p.uri)
        has(verr({ backend = "nbd" }), "missing parameter 'uri': the nbd backend needs")
      end)

      it("names a bad uri or connection count and what is allowed", function()
        has(verr({ backend = "nbd", uri = "http://x/" }),
          [['uri' = "http://x/": for the nbd backend must be a string starting with nbd://, nbds://, nbd+unix://]])
        has(verr({ backend = "nbd", uri = 7 }), "'uri' = 7: for the nbd backend must be a string starting")
        has(verr({ backend = "nbd", uri = "nbd+unix:///?socket=/tmp/s", connections = 0 }),
          "'connections' = 0: for the nbd backend must be an integer from 1 to 4096")
        assert.are.equal(2, params.validate({ backend = "nbd", uri = "nbd://h/",
          connections = 2 }).connections)
        has(verr({ backend = "nbd", uri = "nbd://h/", reconnect = -1 }),
          "'reconnect' = -1: for the nbd backend must be an integer from 0 to 1000")
      end)

      it("names a bad timeout or connect_timeout and the range of seconds allowed", function()
        for _, v in ipairs({ 0, -1, 0.0001, 86401, 0 / 0, math.huge, "5" }) do
          has(verr({ backend = "nbd", uri = "nbd://h/", timeout = v }),
            "'timeout' = " .. (type(v) == "string" and '"5"' or tostring(v))
            .. ": for the nbd backend must be a number of seconds from 0.001 to 86400")
          has(verr({ backend = "nbd", uri = "nbd://h/", connect_timeout = v }),
            "'connect_timeout' = ")
        end
        local p = params.validate({ backend = "nbd", uri = "nbd://h/", timeout = 0.5,
          connect_timeout = 2 })
        assert.are.equal(0.5, p.timeout)
        assert.are.equal(2, p.connect_timeout)
        local b = require("ublk.backend")
        local ok, err = pcall(b.c_backends.nbd, { uri = "nbd://h/", timeout = 0 })
        assert.is_false(ok)
        assert.matches("ublk.nbd: timeout = 0: must be a number of seconds", err)
        local spec = b.core_spec(p)
        -- create() gets milliseconds (backend.h, UBLK_OPT_SECONDS)
        assert.are.equal("500", spec.opts.timeout)
        assert.are.equal("2000", spec.opts.connect_timeout)
      end)
    end)

    describe("limits", function()
      it("are optional and partial", function()
        local p = params.validate({ size = "1M", queues = 64, depth = 4096, max_io = "32M" }, {})
        assert.are.equal(64, p.queues)
        p = params.validate({ size = "1M", queues = 200 }, { max_queues = 256 })
        assert.are.equal(200, p.queues)
        assert.are.equal(4096, params.validate({ size = "1M", depth = 4096 }, { max_queues = 2 }).depth)
      end)

      it("are themselves checked", function()
        has(verr({ size = "1M" }, 4), "ublk: limits must be a table, got 4")
        has(verr({ size = "1M" }, { max_queue = 4 }), "ublk: unknown limit \"max_queue\"")
        has(verr({ size = "1M" }, { max_queues = 0 }),
          "ublk: bad limit 'max_queues' = 0: must be a positive integer")
      end)
    end)
  end)
end)
