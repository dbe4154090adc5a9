-- ublk.transfer copies a backend into another Lua state: here a separate
-- luajit process stands in for a queue thread's state.
local transfer = require "ublk.transfer"
local ffi = require "ffi"
local bit = require "bit"

-- Packs `v`, rebuilds it in a fresh luajit, runs `probe` (Lua source that
-- sees the rebuilt value as `v`) and returns what it printed.
local function across(v, probe)
  local chunk = transfer.pack(v)
  local file = os.tmpname()
  local f = assert(io.open(file, "wb"))
  f:write(chunk)
  f:close()
  local p = io.popen(("luajit -e 'package.path=\"./lua/?.lua;./lua/?/init.lua;\"..package.path\n"
    .. "local t = require \"ublk.transfer\"\nlocal v = t.unpack(io.open(%q, \"rb\"):read(\"*a\"))\n%s' 2>&1")
    :format(file, probe))
  local out = p:read("*a")
  p:close()
  os.remove(file)
  return out
end

describe("ublk.transfer", function()
  it("copies functions with their upvalues, helpers and modules", function()
    local key = 0x5a
    local function helper(x) return bit.bxor(x, key) end
    local t = { read = function(self, x) return helper(x) + ffi.sizeof("int") end }
    assert.are.equal("95\n", across(t, "print(v:read(1))"))
  end)

  it("keeps upvalues shared between closures shared", function()
    local n = 0
    local t = { inc = function() n = n + 1 end, get = function() return n end }
    assert.are.equal("2\n", across(t, "v.inc() v.inc() print(v.get())"))
  end)

  it("copies tables with cycles, binary strings and 64-bit integers", function()
    local t = { s = "a\0b\nc\255", k = 0x0101010101010101ULL, n = -0.5, big = 2^52 + 1 }
    t.me = t
    assert.are.equal("true\ttrue\t0x0101010101010101\t-0.5\t4503599627370497\n",
      across(t, [[print(v.me == v, v.s == "a\0b\nc\255", "0x" .. bit.tohex(v.k), v.n, ("%d"):format(v.big))]]))
  end)

  it("refuses what cannot cross states, naming the value and where it is", function()
    local fh = io.tmpfile()
    local ok, err = pcall(transfer.pack, { read = function() return fh end })
    assert.falsy(ok)
    assert.are.equal("cannot copy upvalue 'fh' of the backend.read to the queue threads: "
      .. "a userdata cannot cross Lua states (create it in the backend's open(), or use ublk.shared)", err)
    local p = ffi.new("char[4]")
    ok, err = pcall(transfer.pack, { x = { y = p } })
    assert.matches("cannot copy the backend.x.y to the queue threads: a cdata", err)
    fh:close()
  end)

  it("hands objects it does not know to the special function", function()
    local marker = {}
    local chunk = transfer.pack({ m = marker }, function(v) if v == marker then return { "inner", 3 } end end)
    local got = transfer.unpack(chunk, function(kind, i) return kind .. i end)
    assert.are.equal("inner3", got.m)
  end)
end)

describe("ublk.backend", function()
  local ublk = require "ublk"

  it("needs a read handler", function()
    assert.has_error(function() ublk.backend { size = "1MiB" } end,
      "ublk.backend: 'read' must be a function(self, req)")
  end)

  it("checks that handlers and hooks are functions", function()
    assert.has_error(function() ublk.backend { read = print, write = 3 } end,
      "ublk.backend: 'write' must be a function, got a number")
  end)

  it("refuses unknown options on C backends", function()
    assert.has_error(function() ublk.file { path = "/x", drect = true } end,
      "ublk.file: unknown option 'drect' (known: path, direct, create, copy, read_only, size)")
  end)

  it("says where delegate and queue helpers work", function()
    assert.has_error(function() ublk.memory():read() end,
      "ublk: read() on a C backend works only inside a Lua backend's handlers")
    assert.has_error(function() ublk.sleep(1) end,
      "ublk.sleep: only inside a Lua backend's handlers (on a queue thread)")
  end)

  it("advertises only the operations a backend has", function()
    local b = ublk.backend { size = "1MiB", read = function() end, flush = function() end }
    local opts = b:core_opts(2^20, false)
    assert.are.equal("1", opts.flush)
    assert.is_nil(opts.fua)
    assert.is_nil(opts.discard)
    assert.is_nil(opts.write_zeroes)
    assert.are.equal("0", opts.delegates)
  end)

  it("turns captured C backends into delegates sized like the device", function()
    local base = ublk.memory()
    local file = ublk.file { path = "/tmp/x", read_only = true }
    local b = ublk.backend { read = function(self, req) return base:read(req), file end }
    local opts = b:core_opts(8 * 2^20, false)
    assert.are.equal("2", opts.delegates)
    local by_name = {}
    for i = 0, 1 do by_name[opts["delegate." .. i .. ".backend"]] = "delegate." .. i .. "." end
    local f, m = by_name.file, by_name.memory
    assert.are.equal("/tmp/x", opts[f .. "path"])
    assert.are.equal("1", opts[f .. "read_only"])
    -- a delegate holds the device: a shorter file is refused at create
    assert.are.equal(tostring(8 * 2^20), opts[f .. "size"])
    assert.are.equal("0", b:core_opts(0, false)["delegate.0.size"], "sized by its delegates")
    assert.is_nil(opts[m .. "read_only"])
    assert.are.equal(tostring(8 * 2^20), opts[m .. "size"])
  end)

  it("names the backends there are when one is misspelt", function()
    assert.has_error(function() ublk.device{ size = "1MiB", backend = "memroy" } end,
      "ublk: unknown backend 'memroy' (memory, null, file, nbd, rbd, plugin, or ublk.backend{...})")
  end)

  it("gives shared memory one address and a size", function()
    local s = ublk.shared("64KiB")
    assert.are.equal(65536, s.size)
    s.ptr[65535] = 7
    assert.are.equal(7, s.ptr[65535])
    assert.are.equal(0, s:address() % 4096)
  end)
end)
