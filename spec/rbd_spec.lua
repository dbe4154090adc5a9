-- The rbd backend on a host queue (ublk.host: the backend's real request
-- path on this machine's io_uring, no kernel ublk) against a real Ceph
-- cluster that spec/harness/ceph/cluster starts for this file and removes after.
-- Bytes are checked by reading them back, and against `rbd export`.
local ublk = require "ublk"
local host = require "ublk.host"
local FUA = 0x2000 -- UBLK_IO_F_FUA (runtime/include/ublk_uapi.h)

local function sh(fmt, ...)
  local p = io.popen(fmt:format(...) .. " 2>&1")
  local out = p:read("*a")
  local ok = p:close()
  return ok, out
end

local function must(fmt, ...)
  local ok, out = sh(fmt, ...)
  assert(ok, fmt:format(...) .. ": " .. out)
  return out
end

local have_ceph = sh("command -v ceph-mon && command -v ceph-osd && command -v rbd")

describe("rbd backend on a host queue", function()
  local conf, q, t_start

  setup(function()
    if not have_ceph then return end
    t_start = os.time()
    local ok, out = sh("spec/harness/ceph/cluster start")
    assert(ok, "spec/harness/ceph/cluster start: " .. out)
    conf = assert(out:match("([^\n]+ceph%.conf)\n?$"), "no conf path: " .. out)
    io.stderr:write("# ", (out:match("started in [^\n]*") or ""), "\n")
  end)

  teardown(function()
    if conf then must("spec/harness/ceph/cluster stop %s", conf) end
  end)

  after_each(function()
    if q then q:close() end
    q = nil
  end)

  local function image(name, size, features)
    must("rbd -c %s create --size %s %s rbd/%s", conf, size,
      features and ("--image-feature " .. features) or "", name)
    return "rbd/" .. name
  end

  -- the image's bytes as the cluster has them
  local function export(name)
    local path = os.tmpname()
    os.remove(path) -- rbd export makes it
    must("rbd -c %s export rbd/%s %s", conf, name, path)
    local f = assert(io.open(path, "rb"))
    local data = f:read("*a")
    f:close()
    os.remove(path)
    return data
  end

  local function pattern(n, seed)
    local t = {}
    for i = 1, n do t[i] = string.char((i * 31 + seed) % 251) end
    return table.concat(t)
  end

  it("writes and reads bytes, which rbd export sees after a flush", function()
    if not have_ceph then pending("ceph-mon/ceph-osd not installed: spec/harness/deps") return end
    local img = image("rw", "16M")
    q = assert(host.queue(ublk.rbd{ image = img, conf = conf }, { depth = 4 }))
    local a, b = pattern(65536, 1), pattern(4096, 7)
    assert.are.equal(65536, assert(q:write(1048576, a)))
    assert.are.equal(4096, assert(q:write(15 * 1048576 + 4096, b, FUA)))
    assert.are.equal(a, q:read(1048576, 65536))
    assert.are.equal(b, q:read(15 * 1048576 + 4096, 4096))
    assert.are.equal(0, assert(q:flush()))
    local data = export("rw")
    assert.are.equal(16 * 1048576, #data)
    assert.are.equal(a, data:sub(1048577, 1048576 + 65536))
    assert.are.equal(b, data:sub(15 * 1048576 + 4097, 15 * 1048576 + 8192))
  end)

  it("write_zeroes reads zeroes, even unaligned inside an object; discard frees space", function()
    if not have_ceph then pending("ceph-mon/ceph-osd not installed: spec/harness/deps") return end
    local img = image("zero", "16M", "layering")
    q = assert(host.queue(ublk.rbd{ image = img, conf = conf }, { depth = 4, max_io = "4MiB" }))
    local a = pattern(4 * 1048576, 3)
    assert(q:write(0, a))
    assert(q:write(4 * 1048576, a))
    -- 3 KiB into the first object, not at its granularity: librbd's
    -- discard would keep these bytes; write_zeroes must not
    assert.are.equal(512 * 7, assert(q:write_zeroes(3072, 512 * 7)))
    local got = q:read(0, 8192)
    assert.are.equal(a:sub(1, 3072), got:sub(1, 3072))
    assert.are.equal(("\0"):rep(512 * 7), got:sub(3073, 3072 + 512 * 7))
    assert.are.equal(a:sub(3073 + 512 * 7, 8192), got:sub(3073 + 512 * 7))
    assert(q:flush())
    local used = tonumber(must("rbd -c %s du --format json %s", conf, img):match('"used_size":(%d+)'))
    assert.are.equal(4 * 1048576, assert(q:discard(4 * 1048576, 4 * 1048576)))
    assert(q:flush())
    local after = tonumber(must("rbd -c %s du --format json %s", conf, img):match('"used_size":(%d+)'))
    assert.is_true(after < used, ("rbd du: %d bytes before the discard, %d after"):format(used, after))
    assert.are.equal(("\0"):rep(4096), q:read(4 * 1048576, 4096))
  end)

  it("examples/rbd-cache.lua: a second read hits, a write drops the blocks it covers, the image has every byte", function()
    if not have_ceph then pending("ceph-mon/ceph-osd not installed: spec/harness/deps") return end
    local img = image("cache", "16M")
    -- a 64 KiB cache: 16 slots, so block 16 shares block 0's
    local t = assert(loadfile("examples/rbd-cache.lua"))(img, "64KiB", conf)
    assert.are.equal(1, t.queues)
    q = assert(host.queue(t.backend, { depth = 4, block_size = t.block_size }))
    local a, b = pattern(16384, 11), pattern(8192, 12)
    assert.are.equal(16384, assert(q:write(0, a)))
    local function counted() return q:stats().counters, q:stats().gauges end
    assert.are.equal(a, q:read(0, 16384))   -- a miss: fills blocks 0-3
    assert.are.equal(a, q:read(0, 16384))   -- a hit
    assert.are.equal(a:sub(4097, 8192), q:read(4096, 4096)) -- inside: a hit
    local c, g = counted()
    assert.are.same({ hits = 2, misses = 1 }, c)
    assert.are.same({ cached_blocks = 4 }, g)
    -- a write over blocks 1-2 drops them; the next read misses and sees it
    assert.are.equal(8192, assert(q:write(4096, b)))
    g = select(2, counted())
    assert.are.equal(2, g.cached_blocks)
    local want = a:sub(1, 4096) .. b .. a:sub(12289)
    assert.are.equal(want, q:read(0, 16384))
    c = counted()
    assert.are.same({ hits = 2, misses = 2 }, c)
    assert.are.equal(want, q:read(0, 16384))
    -- block 16 takes block 0's slot: a miss, and block 0 then misses too
    local far = pattern(4096, 13)
    assert(q:write(16 * 4096, far))
    assert.are.equal(far, q:read(16 * 4096, 4096))
    assert.are.equal(want, q:read(0, 16384))
    c = counted()
    assert.are.same({ hits = 3, misses = 4 }, c)
    -- write_zeroes and discard go through and drop too
    assert.are.equal(4096, assert(q:write_zeroes(0, 4096)))
    assert.are.equal(("\0"):rep(4096) .. want:sub(4097), q:read(0, 16384))
    assert(q:flush())
    local data = export("cache")
    assert.are.equal(("\0"):rep(4096) .. want:sub(4097), data:sub(1, 16384))
    assert.are.equal(far, data:sub(16 * 4096 + 1, 17 * 4096))
  end)

  it("exclusive: a second writer is refused; a broken lock fails I/O with EIO, never hangs", function()
    if not have_ceph then pending("ceph-mon/ceph-osd not installed: spec/harness/deps") return end
    local img = image("ex", "16M")
    q = assert(host.queue(ublk.rbd{ image = img, conf = conf, exclusive = true }, {}))
    assert(q:write(0, pattern(4096, 5)))
    local none, err = host.queue(ublk.rbd{ image = img, conf = conf, exclusive = true }, {})
    assert.is_nil(none)
    assert.matches("^EROFS: .*image 'ex': exclusive lock: .*another client holds it", err)
    -- another client breaks our lock: the cluster blocklists us
    local j = must("rbd -c %s lock ls --format json %s", conf, img)
    local id, locker = j:match('"id":"([^"]+)","locker":"([^"]+)"')
    assert.truthy(id, j)
    must("rbd -c %s lock rm %s '%s' %s", conf, img, id, locker)
    local t0 = ublk.clock()
    local n, msg = q:write(0, pattern(4096, 6))
    assert.is_nil(n)
    assert.matches("^EIO", msg)
    assert.is_true(ublk.clock() - t0 < 5)
    n, msg = q:write(4096, pattern(4096, 6))
    assert.is_nil(n)
    assert.matches("^EIO", msg)
  end)

  it("refuses what cannot work, naming it, before any queue exists", function()
    if not have_ceph then pending("ceph-mon/ceph-osd not installed: spec/harness/deps") return end
    local none, err = host.queue(ublk.rbd{ image = "rbd/nosuch", conf = conf }, {})
    assert.is_nil(none)
    assert.matches("nosuch", err)
    -- no conf anywhere: one line, and librados does not go looking in DNS
    local ok, out = sh("env CEPH_CONF=/nonexistent/ceph.conf "
      .. "LUA_PATH='%s' LUA_CPATH='%s' luajit -e \"local u = require 'ublk'; "
      .. "print(select(2, require('ublk.host').queue(u.rbd{ image = 'rbd/x' }, {})))\"",
      package.path, package.cpath)
    assert(ok, out)
    assert.matches("^ENOENT: .*no ceph.conf found", out)
    assert.are.equal(1, select(2, out:gsub("\n", "")), out)
    -- the declaration's kinds: raised when the object is made
    assert.has_error(function() ublk.rbd{ image = "rbd/x", osd_timeout = 0 } end)
    assert.has_error(function() ublk.rbd{ image = "rbd/x", exclusive = "yes" } end)
    -- what they cannot say, create() refuses before it connects: the
    -- image's syntax, and a snapshot needs read_only
    none, err = host.queue(ublk.rbd{ image = "noslash", conf = conf }, {})
    assert.is_nil(none)
    assert.matches([[image = 'noslash': must be "pool/name"]], err, 1, true)
    none, err = host.queue(ublk.rbd{ image = "rbd/x@s", conf = conf }, {})
    assert.is_nil(none)
    assert.matches("image = 'rbd/x@s' is a snapshot, read-only: set read_only = true", err, 1, true)
  end)

  it("an unreachable cluster: one line, in the timeout, nothing left", function()
    if not have_ceph then pending("ceph-mon/ceph-osd not installed: spec/harness/deps") return end
    -- a conf naming a monitor port nobody listens on
    local dead = os.tmpname()
    local f = assert(io.open(dead, "w"))
    f:write("[global]\nmon host = v2:127.0.0.1:9\nauth client required = none\n")
    f:close()
    local t0 = ublk.clock()
    local none, err = host.queue(ublk.rbd{ image = "rbd/x", conf = dead, osd_timeout = 2 }, {})
    local took = ublk.clock() - t0
    os.remove(dead)
    assert.is_nil(none)
    assert.matches("cannot reach the Ceph cluster", err)
    assert.is_nil(err:find("\n"))
    assert.is_true(took < 6, ("took %.1f s"):format(took))
    io.stderr:write(("# unreachable cluster refused in %.1f s: %s\n"):format(took, err))
  end)
end)
