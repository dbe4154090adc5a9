-- Device lifecycle through the Lua module, in this process: create, start,
-- I/O on dev.path served by our own queue threads, stop, close.
local ublk = require "ublk"
local G = require "guest"

describe("#guest lifecycle", function()
  after_each(G.no_leftovers)

  it("creates, starts, serves, stops and closes a device", function()
    local dev = assert(ublk.device{ size = "16MiB", queues = 2, depth = 32 })
    assert.are.equal("created", dev:state())
    assert.truthy(dev.id >= 0)
    assert.are.equal("/dev/ublkb" .. dev.id, dev.path)
    local info = dev:info()
    assert.are.equal(16 * 2^20, info.size)
    assert.are.equal(2, info.queues)
    assert.are.equal(32, info.depth)
    assert.are.equal("memory", info.backend)

    assert(dev:start())
    assert.are.equal("started", dev:state())
    -- the disk exists with the size we asked for (in 512-byte sectors)
    assert.are.equal(tostring(16 * 2^20 / 512),
      G.read_file(("/sys/block/ublkb%d/size"):format(dev.id)):match("%d+"))
    local md5 = G.write_random_at(dev.path, 4096, 65536)
    assert.are.equal(md5, G.md5_at(dev.path, 4096, 65536))
    assert.truthy(dev:stats().total.writes > 0)

    assert(dev:stop())
    assert.are.equal("stopped", dev:state())
    assert.falsy(G.sh("test -e /sys/block/ublkb%d", dev.id))
    assert(dev:close())
    assert.are.equal("closed", dev:state())
    assert.falsy(G.sh("test -e /sys/class/ublk-char/ublkc%d", dev.id))
  end)

  it("reports how long creation and start took, within what the caller saw", function()
    local t0 = ublk.clock()
    local dev = assert(ublk.device{ size = "8MiB", depth = 128 })
    local t1 = ublk.clock()
    assert(dev:start())
    local t2 = ublk.clock()
    local info = dev:info()
    dev:close()
    -- each is a measurement of its own step: positive, and no longer
    -- than the call around it
    assert.truthy(info.create_us > 0 and info.create_us <= (t1 - t0) * 1e6 + 1,
      ("create_us %d, call took %d us"):format(info.create_us, (t1 - t0) * 1e6))
    assert.truthy(info.start_us > 0 and info.start_us <= (t2 - t1) * 1e6 + 1,
      ("start_us %d, call took %d us"):format(info.start_us, (t2 - t1) * 1e6))
    print(("\n  setup: ADD_DEV..params %d us, threads..START_DEV %d us (depth 128)"):format(
      info.create_us, info.start_us))
  end)

  it("refuses lifecycle misuse with a clear error", function()
    local dev = G.device{ size = "4MiB" }
    assert.has_error(function() dev:start() end,
      ("ublk: cannot start device %d: it is started"):format(dev.id))
    assert(dev:stop())
    assert.has_error(function() dev:stop() end,
      ("ublk: cannot stop device %d: it is stopped"):format(dev.id))
    assert.matches("create a new device", select(2, pcall(dev.start, dev)))
    assert(dev:close())
    assert(dev:close()) -- twice is harmless
    assert.has_error(function() dev:start() end,
      ("ublk: cannot start device %d: it is closed"):format(dev.id))
    assert.has_error(function() dev:info() end)
  end)

  it("closes a started device in one call", function()
    local dev = G.device{ size = "4MiB", queues = 2 }
    assert(dev:close())
    assert.are.same({}, G.leftovers())
  end)

  it("uses the id it is given and reports one in use", function()
    local dev = G.device{ size = "4MiB", id = 7 }
    assert.are.equal("/dev/ublkb7", dev.path)
    local dup, err, errno = ublk.device{ size = "4MiB", id = 7 }
    assert.is_nil(dup)
    assert.matches("device id 7 is already in use", err)
    assert.are.equal(17, errno) -- EEXIST
  end)

  it("refuses more queues than the kernel's limit (4096), before any device exists", function()
    assert.has_error(function() ublk.device{ size = "4MiB", queues = 4097 } end,
      "ublk: bad parameter 'queues' = 4097: must be an integer from 1 to 4096")
  end)

  it("reads the kernel's features", function()
    local f = assert(ublk.features())
    assert.is_true(f.cmd_ioctl_encode)
    local dev = G.device{ size = "4MiB" }
    assert.is_true(dev:info().flags.cmd_ioctl_encode)
    -- the memory backend lets the kernel copy straight into its store
    assert.are.equal(f.user_copy, dev:info().flags.user_copy)
    assert.is_nil(G.device{ size = "4MiB", backend = "null" }:info().flags.user_copy)
  end)

  it("serves a read-only device and refuses writes", function()
    local dev = G.device{ size = "4MiB", read_only = true }
    assert.are.equal("1", G.read_file(("/sys/block/ublkb%d/ro"):format(dev.id)):match("%d"))
    assert.falsy(G.sh("dd if=/dev/zero of=%s bs=4096 count=1 oflag=direct status=none", dev.path))
    assert.are.equal(32, #G.md5_at(dev.path, 0, 4096))
  end)
end)
