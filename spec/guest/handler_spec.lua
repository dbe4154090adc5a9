-- Lua handlers that misbehave, on a real /dev/ublkbN: each fails only its
-- own request, with one log line that names the handler and what it did,
-- and the device serves on (the same paths run on the host, under ASan,
-- in spec/lua_bridge_spec.lua).
local ffi = require "ffi"
local ublk = require "ublk"
local G = require "guest"
local stderr = require "stderr"

local function read_ok(dev, sector)
  return G.sh("dd if=%s of=/dev/null bs=512 skip=%d count=1 iflag=direct status=none",
    dev.path, sector)
end

describe("#guest misbehaving handlers", function()
  after_each(G.no_leftovers)

  it("fail a synchronous handler that calls ublk.sleep, before anything is submitted", function()
    local mem = ublk.shared("4MiB")
    local dev = G.device { backend = ublk.backend {
      size = "4MiB",
      read = function(self, req)
        if req.offset == 65536 then ublk.sleep(100) end
        ffi.copy(req.buf, mem.ptr + req.offset, req.length)
      end,
    } }
    local said = stderr.capture(function()
      assert.is_false(read_ok(dev, 128))
      assert.is_true(read_ok(dev, 136))
      assert.is_false(read_ok(dev, 128))
    end)
    assert.matches("read handler failed: .*ublk.sleep: the backend must set async = true", said)
    assert.are.equal("started", dev:state())
  end)

  it("an on_start that raises: start returns nil, 'EIO: on_start failed: ...', EIO and stops the device", function()
    local dev = assert(ublk.device { backend = ublk.backend {
      size = "4MiB",
      read = function() return true end,
      on_start = function() error("not today") end,
    } })
    local ok, err, errno = dev:start()
    assert.is_nil(ok)
    assert.matches("^EIO: on_start failed: .*not today", err)
    assert.are.equal(ublk.errno.EIO, errno)
    assert.are.equal("stopped", dev:state())
    dev:close()
  end)

  it("fail garbage results with EIO and a line naming the value", function()
    local answers = { "abc", {}, 1e12, -1e12, 0.5 }
    local dev = G.device { backend = ublk.backend {
      size = "4MiB", answers = answers,
      read = function(self, req)
        local a = req.offset >= 2^20 and self.answers[(req.offset - 2^20) / 4096 + 1]
        if a then return a end
        return true
      end,
    } }
    local said = stderr.capture(function()
      for i = 1, #answers do
        assert.is_false(read_ok(dev, 2048 + (i - 1) * 8), tostring(answers[i]))
      end
      assert.is_true(read_ok(dev, 100 * 8))
    end)
    for _, what in ipairs({ "the string 'abc'", "a table", "1e%+12", "%-1e%+12", "0.5" }) do
      assert.matches("read handler returned " .. what, said)
    end
  end)

  it("fail an async request that waits past its budget, or yields with nothing to wait for", function()
    local fifo = "/tmp/ublk-never.fifo"
    G.must("rm -f %s && mkfifo %s", fifo, fifo)
    local mem = ublk.shared("4MiB")
    local dev = G.device { backend = ublk.backend {
      size = "4MiB", async = true, timeout = 1,
      open = function(self) self.fd = assert(ublk.io.open(fifo, "rw")) end,
      close = function(self) ublk.io.close(self.fd) end,
      read = function(self, req)
        if req.offset == 65536 then -- nobody ever writes to the fifo
          local n, err = ublk.io.pread(self.fd, req.buf, req.length, 0)
          if not n then return nil, err end
        elseif req.offset == 69632 then
          coroutine.yield() -- nothing will ever resume it
        end
        ffi.copy(req.buf, mem.ptr + req.offset, req.length)
      end,
    } }
    local t0 = G.now()
    local said = stderr.capture(function()
      assert.is_false(read_ok(dev, 128))
      assert.is_true(read_ok(dev, 256))
      assert.is_false(read_ok(dev, 136))
      assert.is_true(read_ok(dev, 256))
    end)
    assert.truthy(G.now() - t0 < 20)
    assert.matches("read request over its time budget of 1000 ms", said)
    assert.matches("read handler yielded with nothing to wait for", said)
    os.remove(fifo)
  end)

  it("refuse a delegate called twice for one request, failing only that request", function()
    local path = "/tmp/ublk-twice.img"
    local file = ublk.file { path = path, size = "4MiB", create = true }
    local dev = G.device { backend = ublk.backend {
      size = "4MiB",
      read = function(self, req)
        if req.offset == 65536 then file:read(req) end -- in flight, and then again:
        return file:read(req)
      end,
      write = function(self, req) return file:write(req) end,
    } }
    local said = stderr.capture(function()
      assert.is_false(read_ok(dev, 128))
      local md5 = G.write_random_at(dev.path, 4096, 32768)
      assert.are.equal(md5, G.md5_at(dev.path, 4096, 32768))
      assert.is_false(read_ok(dev, 128))
    end)
    assert.matches("delegate is still busy", said)
    dev:close()
    os.remove(path)
  end)
end)
