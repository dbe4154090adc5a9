-- The recorder (runtime/backends/backend_record.c) and the lying disk
-- (backend_lying.c) on a host queue (ublk.host: the runtime's request
-- path, no kernel): what the C side appends, the Lua side reads back, and
-- the state it rebuilds holds the bytes the device served.
local ublk = require "ublk"
local host = require "ublk.host"
local crash = require "ublk.crash"

local FUA = 0x2000 -- UBLK_IO_F_FUA (1 << 13)
local ffi_copy = require("ffi").copy

local function tmp()
  local p = os.tmpname()
  os.remove(p) -- the recorder makes its log itself, and never over a file
  return p
end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

describe("ublk.record", function()
  it("logs writes with their data, FUA, flushes, discards and marks, in order", function()
    local log = tmp()
    local q = assert(host.queue(ublk.record{ base = ublk.memory(), log = log }, { size = "1MiB" }))
    local a, b = random_bytes(4096), random_bytes(8192)
    assert(q:write(0, a))
    assert(q:flush())
    assert(q:write(65536, b, FUA))
    assert(require("ublk.crash_log").mark(log, "after b"))
    assert(q:discard(4096, 4096))
    assert(q:write_zeroes(8192, 512))
    assert.are.equal(a, q:read(0, 4096))
    local l = assert(crash.read(log))
    assert.are.equal(1024 * 1024, l.size)
    assert.are.equal(512, l.block_size)
    -- read while recording: after the entries, the room the writer
    -- mapped ahead, zeros, not a torn entry
    assert.is_true(l.ignored > 0)
    assert.is_false(l.torn)
    local got = {}
    for _, e in ipairs(l.entries) do
      got[#got + 1] = ("%s %s %d %d"):format(e.type, tostring(e.fua), e.offset, e.len)
    end
    assert.are.same({ "write false 0 4096", "flush false 0 0", "write true 65536 8192",
      "mark false 0 0", "discard false 4096 4096", "write_zeroes false 8192 512" }, got)
    -- the last state is what the device serves
    local img = tmp()
    assert(crash.write_state(l, crash.prefix(l, #l.entries), img))
    local s = assert(io.open(img, "rb")):read("*a")
    assert.are.equal(q:read(0, 65536) .. q:read(65536, 8192), s:sub(1, 65536 + 8192))
    q:close()
    -- closed, the log ends at its last entry
    local closed = assert(crash.read(log))
    assert.are.same({ 0, #l.entries }, { closed.ignored, #closed.entries })
    os.remove(img)
    os.remove(log)
  end)

  it("passes the results of a base without io_done through (nbd)", function()
    local sock, pidf, log = tmp(), os.tmpname(), tmp()
    assert(os.execute(("nbdkit -U %s -P %s memory 1M"):format(sock, pidf)) == 0)
    for _ = 1, 100 do
      if io.open(sock) then break end
      os.execute("sleep 0.05")
    end
    local q = assert(host.queue(ublk.record{ base = ublk.nbd{ uri = "nbd+unix:///?socket=" .. sock },
      log = log }, { size = "1MiB" }))
    local a = random_bytes(4096)
    assert(q:write(0, a))
    assert(q:flush())
    assert.are.equal(a, q:read(0, 4096))
    q:close()
    os.execute(("kill $(cat %s)"):format(pidf))
    local l = assert(crash.read(log))
    assert.are.equal(2, #l.entries)
    os.remove(pidf)
    os.remove(log)
  end)

  it("refuses a log that exists, naming it", function()
    local log = os.tmpname()
    local q, err = host.queue(ublk.record{ base = "null", log = log }, { size = "1MiB" })
    assert.is_nil(q)
    assert.matches("never overwritten", err)
    os.remove(log)
  end)

  it("add -t file -f IMG --record LOG: the file's options go to the recorded base, which sizes itself", function()
    local img, log = os.tmpname(), tmp()
    assert(os.execute(("truncate -s 2M %s"):format(img)) == 0)
    local spec = require("ublk.policy").from_spec{ backend = "file", path = img, record = log }
    assert.are.same({ "record", "file", img, nil, 2097152 }, { spec.backend.name,
      spec.backend.base.name, spec.backend.base.path, spec.path, spec.size })
    local q = assert(host.queue(spec.backend, { size = spec.size }))
    local a = random_bytes(4096)
    assert(q:write(8192, a))
    q:close()
    local f = assert(io.open(img, "rb"))
    f:seek("set", 8192)
    assert.are.equal(a, f:read(4096))
    f:close()
    assert.are.equal(1, #assert(crash.read(log)).entries)
    os.remove(img)
    os.remove(log)
  end)

  it("refuses a base that is no backend, a Lua backend copying but by buffer, and unknown options", function()
    assert.has_error(function() ublk.record{ base = 42, log = "x" } end)
    assert.has_error(function()
      ublk.record{ base = ublk.backend{ read = function() end, copy = "inline" }, log = "x" }
    end, 'ublk.record: a Lua backend is recorded with copy = "buffer" (the log reads each write\'s'
      .. ' data from the tag\'s buffer), and this one has copy = "inline"')
    assert.has_error(function() ublk.record{ base = "memory" } end)
    assert.has_error(function() ublk.record{ base = "memory", log = "x", fast = true } end)
  end)

  it("records a Lua backend before its handlers see each request, a flush it does not take too", function()
    local log = tmp()
    local lb = ublk.backend{
      size = "1MiB",
      read = function(self, req) ffi_copy(req.buf, self.mem.ptr + req.offset, req.length) return req.length end,
      write = function(self, req) ffi_copy(self.mem.ptr + req.offset, req.buf, req.length) return req.length end,
      mem = ublk.shared("1MiB"),
    }
    local dev = ublk.record{ base = lb, log = log }
    assert.are.equal(log, require("ublk.policy").log_of(dev))
    local q = assert(host.queue(dev, { size = "1MiB" }))
    local a, b = random_bytes(4096), random_bytes(512)
    assert(q:write(8192, a))
    assert.are.equal(0, (q:flush())) -- no flush handler: logged, then done here
    assert(q:write(0, b, FUA))
    assert.are.equal(a, q:read(8192, 4096))
    q:close()
    local l = assert(crash.read(log))
    local got = {}
    for _, e in ipairs(l.entries) do
      got[#got + 1] = ("%s %s %d %d"):format(e.type, tostring(e.fua), e.offset, e.len)
    end
    assert.are.same({ "write false 8192 4096", "flush false 0 0", "write true 0 512" }, got)
    local img = tmp()
    assert(crash.write_state(l, crash.prefix(l, #l.entries), img))
    local s = assert(io.open(img, "rb")):read("*a")
    assert.are.equal(b, s:sub(1, 512))
    assert.are.equal(a, s:sub(8193, 8192 + 4096))
    os.remove(img)
    os.remove(log)
  end)
end)

describe("ublk.lying", function()
  it("over the recorder: FLUSH never reaches the log, FUA is dropped", function()
    local log = tmp()
    local q = assert(host.queue(ublk.lying{ base = ublk.record{ base = ublk.memory(), log = log } },
      { size = "1MiB" }))
    local a = random_bytes(4096)
    assert(q:write(0, a, FUA))
    assert.are.equal(0, (q:flush()))
    assert.are.equal(a, q:read(0, 4096))
    q:close()
    local l = assert(crash.read(log))
    assert.are.equal(1, #l.entries)
    assert.are.same({ "write", false }, { l.entries[1].type, l.entries[1].fua })
    os.remove(log)
  end)
end)
