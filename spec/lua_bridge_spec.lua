-- The Lua bridge on the host, no kernel driver: Lua backends served by a
-- host queue (ublk.host), so every request runs the real path: a queue
-- lua_State of its own, handlers called from C, delegates to C backends,
-- async waits on a real io_uring, results turned into the commit.
local ffi = require "ffi"
local ublk = require "ublk"
local host = require "ublk.host"
local stderr = require "stderr"

-- Log messages in `out`: a traceback's lines, indented under its
-- message, are part of it.
local function messages(out)
  return select(2, ("\n" .. out):gsub("\n[^ \n]", ""))
end

local function pattern(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char((seed + i * 7) % 256) end
  return table.concat(t)
end

local function tmpfile(size)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(("\0"):rep(size))
  f:close()
  return path
end

-- A new named pipe: a read of it waits until someone writes.
local function tmpfifo()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkfifo " .. path) == 0)
  return path
end

local function file_bytes(path, off, len)
  local f = assert(io.open(path, "rb"))
  f:seek("set", off)
  local s = f:read(len)
  f:close()
  return s
end

describe("the Lua bridge on a host queue", function()
  local q
  after_each(function() if q then q:close() end; q = nil end)

  it("serves a synchronous pure-Lua RAM disk, bytes and all", function()
    local mem = ublk.shared("1MiB")
    q = assert(host.queue(ublk.backend {
      size = "1MiB",
      read = function(self, req) ffi.copy(req.buf, mem.ptr + req.offset, req.length) end,
      write = function(self, req) ffi.copy(mem.ptr + req.offset, req.buf, req.length) end,
    }))
    local data = pattern(8192, 3)
    assert.are.equal(8192, q:write(4096 + 512, data))
    assert.are.equal(data, q:read(4096 + 512, 8192))
    assert.are.equal(data, ffi.string(mem.ptr + 4096 + 512, 8192))
  end)

  it("moves data with req:copy, whole or in parts, and refuses a range past the request", function()
    local mem = ublk.shared("1MiB")
    q = assert(host.queue(ublk.backend {
      size = "1MiB",
      read = function(self, req)
        local half = req.length / 2
        assert(req:copy(mem.ptr + req.offset, half))
        assert(req:copy(mem.ptr + req.offset + half, half, half))
        local ok, err = req:copy(mem.ptr, 512, req.length)
        assert(ok == nil and err:match("^EINVAL"), tostring(err))
      end,
      write = function(self, req) return req:copy(mem.ptr + req.offset) end,
    }))
    local data = pattern(16384, 5)
    assert.are.equal(16384, q:write(8192, data))
    assert.are.equal(data, ffi.string(mem.ptr + 8192, 16384))
    assert.are.equal(data, q:read(8192, 16384))
  end)

  it("refuses a req kept from an earlier request: req:copy, req.buf and delegates raise", function()
    for _, async in ipairs { false, true } do
      local mem = ublk.shared("64KiB")
      local base = ublk.memory()
      local out = stderr.capture(function()
        q = assert(host.queue(ublk.backend {
          size = "64KiB", async = async,
          read = function(self, req)
            local s = req.offset / 512
            if s == 0 then self.kept = req; return req.buf ~= nil end
            if async then ublk.sleep(1) end -- its own req stays good across a wait
            if s == 1 then return self.kept:copy(mem.ptr, 512) end
            if s == 2 then return self.kept.buf ~= nil end
            if s == 3 then return base:read(self.kept, mem.ptr, 512, 0) end
            assert(req.buf ~= nil)
            return req:copy(mem.ptr)
          end,
        }, { depth = 2 }))
        assert.are.equal(512, q:io("read", 0, 512, 0, 0))
        for s = 1, 3 do assert.are.equal(-5, q:io("read", s * 512, 512, 0, 1)) end
        assert.are.equal(512, q:io("read", 4 * 512, 512, 0, 1))
      end)
      q:close(); q = nil
      local lines = messages(out)
      assert.are.equal(3, lines, out)
      for _, what in ipairs { "req:copy", "req.buf", "delegate read" } do
        assert.matches("ublk: " .. what .. " on the request of tag 0, which this handler does "
          .. "not serve (a req is only good in its own handler call)", out, 1, true)
      end
    end
  end)

  it("runs handlers in the queue's own Lua state, not the script's", function()
    seen_by_handler = nil -- a global of this state
    q = assert(host.queue(ublk.backend {
      size = "64KiB",
      read = function(self, req)
        if seen_by_handler ~= nil then return nil, "EEXIST" end
        return ublk.queue_id() == 0
      end,
    }))
    assert.are.equal(512, q:io("read", 0, 512))
  end)

  it("warns at creation of a handler reading a global the queue's state lacks", function()
    local scale = 2 -- a local: it travels with the handler, no warning
    local out = stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB",
        open = function() made_by_open = {} end, -- set in the queue: no warning
        read = function()
          made_by_open[1] = scale
          return string.rep("x", 0) and blocks_per_sector -- luacheck: ignore
        end,
      }))
    end)
    assert.are.equal(1, messages(out), out)
    assert.matches("^ublk%-lua: warning: the backend%.read %(spec/lua_bridge_spec%.lua:%d+%) reads "
      .. "the global 'blocks_per_sector', which a queue's Lua state does not have: it will be nil "
      .. "there %(a missing `local`%?", out)
  end)

  it("maps results: byte counts, errno names and numbers, raises", function()
    local out = stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB",
        read = function(self, req)
          local s = req.offset / 512
          if s == 1 then return nil, "ENOSPC" end
          if s == 2 then return -61 end
          if s == 3 then error("boom") end
          if s == 4 then return nil, "ENOSPC: no room left" end
          if s == 5 then return 256 end
          return true
        end,
      }))
      assert.are.equal(512, q:io("read", 0, 512))
      assert.are.equal(-28, q:io("read", 512, 512))
      assert.are.equal(-61, q:io("read", 1024, 512))
      assert.are.equal(-5, q:io("read", 1536, 512))
      assert.are.equal(-28, q:io("read", 2048, 512))
      assert.are.equal(256, q:io("read", 2560, 512))
    end)
    -- one message: the error on its line, the traceback on the lines after
    -- it, indented under it (not joined into one line)
    local first, rest = out:match("^([^\n]*)\n(.*)$")
    assert.matches("^ublk%-lua: error: dev %d+ queue 0 tag 0: read handler failed: .*boom$", first)
    assert.matches("^    stack traceback:\n      %[C%]: in function 'error'\n", rest)
    for l in rest:gmatch("[^\n]+") do assert.matches("^    ", l) end
    assert.falsy(out:find("|", 1, true), out)
  end)

  it("keeps a backend's own counters and gauges where stats reads them, and failures by errno", function()
    q = assert(host.queue(ublk.backend {
      size = "64KiB",
      counters = { reads = "counter", read_bytes_seen = "counter", last_offset = "gauge" },
      read = function(self, req)
        local c = self.counters
        c.reads = c.reads + 1
        c.read_bytes_seen = c.read_bytes_seen + req.length
        c.last_offset = req.offset
        if req.offset == 4096 then return nil, "ENOSPC" end
        return true
      end,
      write = function(self, req) self.counters.writes = 1 end, -- not declared: raises
      discard = function(self, req) self.counters.reads = 0 / 0 end, -- not a number: raises
    }))
    for i = 0, 7 do assert.are.equal(512, q:io("read", i * 512, 512)) end
    assert.are.equal(-28, q:io("read", 4096, 1024))
    local out = stderr.capture(function() assert.are.equal(-5, q:io("write", 0, 512)) end)
    assert.matches("self.counters has no 'writes' (the backend's counters declare last_offset, "
      .. "read_bytes_seen, reads)", out, 1, true)
    out = stderr.capture(function() assert.are.equal(-5, q:io("discard", 0, 4096)) end)
    assert.matches("self.counters.reads = nan: a finite number", out, 1, true)
    local s = q:stats()
    assert.are.same({ reads = 9, read_bytes_seen = 8 * 512 + 1024 }, s.counters)
    assert.are.same({ last_offset = 4096 }, s.gauges)
    assert.are.same({ ENOSPC = 1, EIO = 2 }, s.errnos)
    assert.are.equal(3, s.errors)
    assert.are.equal(8, s.ops.read)
    assert.are.equal(0, s.inflight)
  end)

  -- A host queue has no kernel: in every mode its data moves by the
  -- buffer path; this checks each mode is taken and serves.  The kernel's
  -- path of each is spec/guest/copy_spec.lua's.
  it("takes each copy it is given and serves by req.buf and req:copy", function()
    for _, mode in ipairs{ "buffer", "inline", "auto_reg", false } do
      local mem = ublk.shared("1MiB")
      q = assert(host.queue(ublk.backend {
        size = "1MiB", copy = mode or nil, store = mem,
        -- below 64 KiB by req.buf, above by req:copy
        read = function(self, req)
          if req.offset >= 65536 then return req:copy(self.store.ptr + req.offset) end
          ffi.copy(req.buf, self.store.ptr + req.offset, req.length)
        end,
        write = function(self, req)
          if req.offset >= 65536 then return req:copy(self.store.ptr + req.offset) end
          ffi.copy(self.store.ptr + req.offset, req.buf, req.length)
        end,
      }))
      local a, b = pattern(8192, 21), pattern(16384, 22)
      assert.are.equal(8192, q:write(4096, a))
      assert.are.equal(16384, q:write(131072, b))
      assert.are.equal(a, q:read(4096, 8192), tostring(mode))
      assert.are.equal(b, q:read(131072, 16384), tostring(mode))
      assert.are.equal(b, ffi.string(mem.ptr + 131072, 16384))
      q:close()
      q = nil
    end
    local ok, err = pcall(ublk.backend, { read = function() end, copy = "register" })
    assert.is_false(ok)
    assert.matches('copy = "register": a Lua backend\'s requests move by "buffer"', err, 1, true)
  end)

  it("refuses counters that are not name = \"counter\" | \"gauge\", at most 16", function()
    local function refused(counters)
      local ok, err = pcall(ublk.backend, { read = function() end, counters = counters })
      assert.is_false(ok)
      return err
    end
    assert.matches("'counters' must be a table", refused(3), 1, true)
    assert.matches("counters.hits = count: must be \"counter\" (only grows) or \"gauge\"",
      refused({ hits = "count" }), 1, true)
    assert.matches("counters: '1st' is no name", refused({ ["1st"] = "counter" }), 1, true)
    assert.matches("is no name: letters, digits and _, not first a digit, at most 31",
      refused({ [("x"):rep(32)] = "gauge" }), 1, true)
    assert.matches("counters: 'hits_total' ends in _total, which /metrics adds to a counter's "
      .. "name itself: call it 'hits'", refused({ hits_total = "gauge" }), 1, true)
    local many = {}
    for i = 1, 17 do many["c" .. i] = "counter" end
    assert.matches("counters: 17 declared, at most 16", refused(many), 1, true)
  end)

  it("takes a failure's errno from its number where ublk.errno does not know the name", function()
    for _, async in ipairs { false, true } do
      local out = stderr.capture(function()
        q = assert(host.queue(ublk.backend {
          size = "64KiB", async = async,
          read = function(self, req)
            local s = req.offset / 512
            if s == 0 then return nil, "EPIPE" end
            if s == 1 then return nil, "EPIPE: Broken pipe", 32 end
            if s == 2 then return nil, "ENOKEY: Required key not available", 126 end
            if s == 3 then return false, "ENOKEY: Required key not available", 126 end
            return nil, "ENOKEY", 0 -- no errno at all: EIO, and a line
          end,
        }))
        assert.are.equal(-32, q:io("read", 0, 512))
        assert.are.equal(-32, q:io("read", 512, 512))
        assert.are.equal(-126, q:io("read", 1024, 512))
        assert.are.equal(-126, q:io("read", 1536, 512))
        assert.are.equal(-5, q:io("read", 2048, 512))
      end)
      q:close(); q = nil
      local lines = messages(out)
      assert.are.equal(1, lines, out)
      assert.matches("tag 0: read handler failed with 'ENOKEY', not an errno name: EIO", out)
    end
  end)

  it("fails garbage results with EIO and a line naming the value", function()
    local values = { "abc", {}, 1e12, -1e12, 1.5 }
    local out = stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB",
        read = function(self, req) return values[req.offset / 512 + 1] end,
      }))
      for i = 1, #values do
        assert.are.equal(-5, q:io("read", (i - 1) * 512, 512), tostring(values[i]))
      end
    end)
    assert.matches("read handler returned the string 'abc'", out)
    assert.matches("read handler returned a table", out)
    assert.matches("read handler returned 1e%+12: expected a byte count 0..512", out)
    assert.matches("read handler returned %-1e%+12", out)
    assert.matches("read handler returned 1.5", out)
  end)

  it("delegates to a synchronous C backend and to the asynchronous file backend", function()
    local path = tmpfile(2^20)
    local base, file = ublk.memory(), ublk.file { path = path }
    q = assert(host.queue(ublk.backend {
      size = "1MiB",
      read = function(self, req)
        if req.offset < 65536 then return base:read(req) end
        return file:read(req) -- in flight: the file's completion finishes it
      end,
      write = function(self, req)
        if req.offset < 65536 then return base:write(req) end
        return file:write(req)
      end,
    }))
    local a, b = pattern(4096, 1), pattern(4096, 2)
    assert.are.equal(4096, q:write(8192, a))
    assert.are.equal(4096, q:write(131072, b))
    assert.are.equal(a, q:read(8192, 4096))
    assert.are.equal(b, q:read(131072, 4096))
    assert.are.equal(b, file_bytes(path, 131072, 4096))
    q:close(); q = nil
    os.remove(path)
  end)

  it("refuses a second call of a delegate still busy with the request", function()
    local path = tmpfile(65536)
    local file = ublk.file { path = path }
    local out = stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB",
        read = function(self, req)
          file:read(req)
          return file:read(req)
        end,
      }))
      assert.are.equal(-5, q:io("read", 0, 4096))
      assert.are.equal(-5, q:io("read", 4096, 4096)) -- and again: the tag is free
    end)
    assert.matches("delegate is still busy", out)
    q:close(); q = nil
    os.remove(path)
  end)

  it("lets async handlers wait on sleeps, reads and delegates, and look at the data", function()
    local path = tmpfile(65536)
    local fd_path = tmpfile(4096)
    local f = assert(io.open(fd_path, "wb")); f:write(pattern(4096, 9)); f:close()
    local file = ublk.file { path = path }
    q = assert(host.queue(ublk.backend {
      size = "64KiB", async = true,
      open = function(self) self.fd = assert(ublk.io.open(fd_path, "r")) end,
      close = function(self) ublk.io.close(self.fd) end,
      read = function(self, req)
        local t0 = ublk.clock()
        assert(ublk.sleep(20))
        self.slept = ublk.clock() - t0
        if req.offset == 0 then
          return ublk.io.pread(self.fd, req.buf, req.length, 0)
        end
        local n, err = file:read(req) -- waits, then flips every byte
        if not n then return nil, err end
        for i = 0, n - 1 do req.buf[i] = bit.bxor(req.buf[i], 0xff) end
        return n
      end,
      write = function(self, req) return file:write(req) end,
    }, { depth = 2 }))
    assert.are.equal(pattern(4096, 9), q:read(0, 4096))
    assert.are.equal(4096, q:write(8192, ("\1"):rep(4096)))
    assert.are.equal(("\254"):rep(4096), q:read(8192, 4096))
    q:close(); q = nil
    os.remove(path); os.remove(fd_path)
  end)

  it("fails a synchronous handler that tries to wait, before anything is submitted", function()
    local out = stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB",
        read = function(self, req)
          if req.offset == 0 then ublk.sleep(1000) end
          return true
        end,
      }))
      assert.are.equal(-5, q:io("read", 0, 512))
      assert.are.equal(512, q:io("read", 512, 512)) -- the queue serves on
      assert.are.equal(-5, q:io("read", 0, 512))
    end)
    local lines = messages(out)
    assert.are.equal(2, lines, out)
    assert.matches("ublk.sleep: the backend must set async = true to wait", out)
  end)

  it("fails a synchronous handler that calls ublk.io.pread/pwrite/fsync, before anything is read", function()
    local fd_path = tmpfile(4096)
    local f = assert(io.open(fd_path, "wb")); f:write(pattern(4096, 11)); f:close()
    local out = stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB",
        open = function(self) self.fd = assert(ublk.io.open(fd_path, "rw")) end,
        close = function(self) ublk.io.close(self.fd) end,
        read = function(self, req)
          ffi.fill(req.buf, req.length, 0xaa)
          if req.offset == 0 then ublk.io.pread(self.fd, req.buf, 512, 0) end
          if req.offset == 512 then ublk.io.pwrite(self.fd, req.buf, 512, 0) end
          if req.offset == 1024 then ublk.io.fsync(self.fd) end
          return true
        end,
      }))
      for _, off in ipairs { 0, 512, 1024 } do
        assert.are.equal(-5, q:io("read", off, 512))
        assert.are.equal(("\170"):rep(512), q:read(4096, 512)) -- the queue serves on
      end
    end)
    local lines = messages(out)
    assert.are.equal(3, lines, out)
    for _, name in ipairs { "pread", "pwrite", "fsync" } do
      assert.matches("ublk.io." .. name .. ": the backend must set async = true to wait", out, 1, true)
    end
    q:close(); q = nil
    -- nothing reached the file: no write was submitted
    assert.are.equal(pattern(4096, 11), file_bytes(fd_path, 0, 4096))
    os.remove(fd_path)
  end)

  it("gives queue-side helper failures one shape: nil, 'ENAME: message', errno", function()
    q = assert(host.queue(ublk.backend {
      size = "64KiB", async = true,
      read = function(self, req)
        local r, msg, e = ublk.io.pread(-1, req.buf, 512, 0)
        local fd, omsg, oe = ublk.io.open("/nonexistent/x", "r")
        if r == nil and msg:match("^EBADF: ") and e == 9
            and fd == nil and omsg:match("^ENOENT: ") and oe == 2 then
          return true
        end
        return nil, "EINVAL"
      end,
    }))
    assert.are.equal(512, q:io("read", 0, 512))
  end)

  it("fails an async handler that yields with nothing to wait for, and recovers the tag", function()
    local out = stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB", async = true,
        read = function(self, req)
          if req.offset == 0 then coroutine.yield() end
          return true
        end,
      }, { depth = 1 }))
      assert.are.equal(-5, q:io("read", 0, 512))
      assert.are.equal(512, q:io("read", 512, 512))
    end)
    assert.matches("yielded with nothing to wait for", out)
  end)

  it("keeps an async handler that raised with a read in flight, and its buffer, until the read is done", function()
    local path = tmpfile(4096)
    local f = assert(io.open(path, "wb")); f:write(pattern(4096, 13)); f:close()
    local mem = ublk.shared("4KiB") -- what the buffer's finalizer saw, for this state to read
    local out = stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB", async = true,
        open = function(self) self.fd = assert(ublk.io.open(path, "r")) end,
        close = function(self) ublk.io.close(self.fd) end,
        read = function(self, req)
          if req.offset ~= 0 then
            collectgarbage("setpause", 200); collectgarbage("setstepmul", 200)
            collectgarbage(); collectgarbage()
            return true
          end
          -- from here every allocation runs a whole collection
          collectgarbage("setpause", 0); collectgarbage("setstepmul", 1e8)
          local buf = ffi.gc(ffi.new("uint8_t[4096]"), function(b)
            mem.ptr[0], mem.ptr[1] = 1, b[2048]
          end)
          -- the read is submitted, then its wait raises: no yield inside gsub's callback
          string.gsub("x", ".", function() ublk.io.pread(self.fd, buf + 2048, 1, 0) end)
        end,
      }, { depth = 1 }))
      assert.are.equal(-5, q:io("read", 0, 512))
    end)
    assert.matches("attempt to yield across C%-call boundary", out)
    assert.are.equal(512, q:io("read", 512, 512)) -- collects, on the same tag
    assert.are.equal(1, mem.ptr[0]) -- the coroutine was let go in the end
    assert.are.equal(pattern(1, 13):byte(), mem.ptr[1]) -- but not before the read filled buf
    q:close(); q = nil
    os.remove(path)
  end)

  it("runs the C backends too, with their options", function()
    local path = tmpfile(65536)
    q = assert(host.queue("file", { path = path, direct = false }))
    assert.are.equal(4096, q:write(4096, pattern(4096, 5)))
    assert.are.equal(pattern(4096, 5), file_bytes(path, 4096, 4096))
    assert.are.equal(0, q:flush())
    q:close(); q = nil
    -- copy = "inline" is taken (a host queue has no kernel to copy from:
    -- the buffer path; copy_spec drives the user copy), both ways
    q = assert(host.queue("file", { path = path, copy = "inline" }))
    assert.are.equal(8192, q:write(16384, pattern(8192, 6)))
    assert.are.equal(pattern(8192, 6), file_bytes(path, 16384, 8192))
    assert.are.equal(pattern(8192, 6), q:read(16384, 8192))
    q:close(); q = nil
    os.remove(path)
    local none, err, errno = host.queue("file", { path = "/nonexistent/x", size = "1MiB" })
    assert.is_nil(none)
    assert.matches("^ENOENT: '/nonexistent/x' does not exist %(create = true", err)
    assert.are.equal(2, errno)
  end)
end)

describe("examples on a host queue", function()
  it("examples/xor.lua stores what it is given and returns it unscrambled", function()
    local disk = assert(loadfile("examples/xor.lua"))().backend
    local q = assert(host.queue(disk, { size = "1MiB", depth = 4 }))
    local data = pattern(4096, 4)
    assert.are.equal(4096, q:write(8192, data))
    assert.are.equal(data, q:read(8192, 4096))
    -- the store is scrambled: its zeroes read back as the key, 0x5a
    assert.are.equal(("Z"):rep(512), q:read(0, 512))
    q:close()
  end)
end)

describe("the time budget of a Lua request", function()
  it("interrupts a handler looping past its budget: ETIMEDOUT, and the queue serves on", function()
    local q
    local t0 = ublk.clock()
    local said = stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB", timeout = 0.3,
        read = function(self, req)
          if req.offset == 0 then while true do os.clock() end end
          return true
        end,
      }))
      assert.are.equal(-110, q:io("read", 0, 512))
    end)
    local secs = ublk.clock() - t0
    assert.truthy(secs < 5, secs)
    assert.matches("read handler failed: .*over its time budget of 300 ms", said)
    assert.are.equal(512, q:io("read", 512, 512))
    q:close()
  end)

  it("cancels what an async handler waits for past its budget: ETIMEDOUT", function()
    local fifo = tmpfifo()
    local q
    local said = stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB", timeout = 0.3, async = true,
        open = function(self) self.fd = assert(ublk.io.open(fifo, "rw")) end,
        close = function(self) ublk.io.close(self.fd) end,
        read = function(self, req)
          if req.offset == 0 then -- nobody ever writes to the fifo
            local n, err = ublk.io.pread(self.fd, req.buf, req.length, 0)
            if not n then return nil, err end
          end
          return true
        end,
      }, { depth = 2 }))
      assert.are.equal(-110, q:io("read", 0, 512))
    end)
    assert.matches("read request over its time budget of 300 ms", said)
    assert.are.equal(512, q:io("read", 512, 512))
    q:close()
    os.remove(fifo)
  end)

  it("starts nothing new for an async handler past its budget: its helpers fail ETIMEDOUT", function()
    local fifo = tmpfifo()
    local path = tmpfile(65536)
    local file = ublk.file { path = path }
    local mem = ublk.shared("4KiB") -- what the handler saw, for this state to read
    local function why(ok, msg, e) return ok and "ok" or msg:match("^%u+") .. "/" .. e end
    local q
    stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB", timeout = 0.3, async = true,
        open = function(self)
          self.fifo = assert(ublk.io.open(fifo, "rw"))
          self.fd = assert(ublk.io.open(path, "r"))
        end,
        close = function(self) ublk.io.close(self.fifo); ublk.io.close(self.fd) end,
        read = function(self, req)
          local saw = {
            why(ublk.io.pread(self.fifo, req.buf, req.length, 0)), -- nobody writes: cancelled
            why(ublk.sleep(1000)),
            why(ublk.io.pread(self.fd, req.buf, req.length, 0)),
            why(ublk.io.fsync(self.fd)),
            why(file:read(req)),
          }
          local s = table.concat(saw, " ")
          ffi.copy(mem.ptr, s, #s + 1)
          return true
        end,
      }, { depth = 2 }))
      assert.are.equal(-110, q:io("read", 0, 512))
    end)
    assert.are.equal("ECANCELED/125 ETIMEDOUT/110 ETIMEDOUT/110 ETIMEDOUT/110 ETIMEDOUT/110",
      ffi.string(mem.ptr))
    q:close()
    os.remove(fifo); os.remove(path)
  end)

  it("ends an async handler that waits again and again past its budget, at once", function()
    local q, t0
    stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB", timeout = 0.3, async = true,
        read = function(self, req)
          local n = 0 -- 5 s if every sleep waited
          repeat ublk.sleep(50); n = n + 1 until self.ready or n == 100
          return true
        end,
      }, { depth = 1 }))
      t0 = ublk.clock()
      assert.are.equal(-110, q:io("read", 0, 512))
    end)
    local secs = ublk.clock() - t0
    assert.truthy(secs < 2, secs)
    q:close()
  end)

  it("fails a request whose async handler raised with a read in flight, when the read outlives the budget", function()
    local fifo = tmpfifo()
    local q, t0
    local said = stderr.capture(function()
      q = assert(host.queue(ublk.backend {
        size = "64KiB", timeout = 0.3, async = true,
        open = function(self) self.fd = assert(ublk.io.open(fifo, "rw")) end,
        close = function(self) ublk.io.close(self.fd) end,
        read = function(self, req)
          if req.offset ~= 0 then return true end
          -- the read is submitted, then its wait raises: no yield inside gsub's callback
          string.gsub("x", ".", function() ublk.io.pread(self.fd, req.buf, 1, 0) end)
        end,
      }, { depth = 1 }))
      -- unless the budget cancels it, the read waits for this writer
      os.execute("(sleep 5; [ -p " .. fifo .. " ] && echo x > " .. fifo .. ") >/dev/null 2>&1 &")
      t0 = ublk.clock()
      assert.are.equal(-110, q:io("read", 0, 512))
    end)
    local secs = ublk.clock() - t0
    assert.truthy(secs < 3, secs)
    assert.matches("attempt to yield across C%-call boundary", said)
    assert.matches("read request over its time budget of 300 ms", said)
    assert.are.equal(512, q:io("read", 512, 512)) -- the tag has a coroutine again
    q:close()
    os.remove(fifo)
  end)

  it("refuses a budget that is not a number of seconds", function()
    assert.has_error(function() ublk.backend { read = function() end, timeout = "1s" } end,
      "ublk.backend: 'timeout' must be a number of seconds from 0 to 86400, got 1s")
  end)
end)
