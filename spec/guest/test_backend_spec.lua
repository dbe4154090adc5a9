-- Adding a C backend is one file and one registry line: the test-only
-- pattern backend (spec/backends/backend_pattern.c, a UBLK_TEST_BACKEND
-- line in runtime/backends/backend.c) is served by build/ublk-lua-test
-- from a script's device table, as a Lua backend's delegate
-- (ublk.pattern{}), and by `add -t pattern --seed N`, with nothing else
-- written for it.  Its seed option is checked by the device's bytes: the
-- pattern it starts with, then what is written over it read back.
local G = require "guest"
local M = require "manage"

local TEST_BIN = "build/ublk-lua-test"
local MiB = 1048576

-- md5 of what the pattern backend holds at [off, off + len) for `seed`
local function pattern_md5(off, len, seed)
  local period = {}
  for i = 0, 250 do period[i + 1] = string.char(i) end
  period = table.concat(period)
  local start = (off + seed) % 251
  local s = (period:sub(start + 1) .. period:sub(1, start)):rep(math.ceil(len / 251) + 1)
  local tmp = os.tmpname()
  G.write_file(tmp, s:sub(1, len))
  local md5 = G.must("md5sum < %s", tmp):match("^(%x+)")
  os.remove(tmp)
  return md5
end

-- The device at `path` holds seed's pattern, and keeps what is written.
local function check_device(path, seed)
  assert.are.equal(pattern_md5(0, MiB, seed), G.md5_at(path, 0, MiB))
  assert.are.equal(pattern_md5(3 * MiB + 4096, 65536, seed), G.md5_at(path, 3 * MiB + 4096, 65536))
  local md5 = G.write_random_at(path, MiB, MiB)
  assert.are.equal(md5, G.md5_at(path, MiB, MiB))
  -- around the write the pattern stands
  assert.are.equal(pattern_md5(2 * MiB, 4096, seed), G.md5_at(path, 2 * MiB, 4096))
end

describe("#guest a test-only C backend, added as a new one is", function()
  local bin, t0
  before_each(function()
    bin, G.bin = G.bin, TEST_BIN
    t0 = G.now()
  end)
  after_each(function()
    M.reset()
    G.bin = bin
    print(("# test_backend_spec: %.1f s"):format(G.now() - t0))
  end)

  it("serves a script's device table and a Lua backend's delegate", function()
    G.write_file("/tmp/pattern-dev.lua", [[
local ublk = require "ublk"
local base = ublk.pattern{ seed = 3 }
return {
  { backend = "pattern", size = "8MiB", seed = 7 },
  { size = "4MiB", backend = ublk.backend{
      read = function(self, req) return base:read(req) end,
      write = function(self, req) return base:write(req) end } },
}
]])
    local rc, out = M.cli("add /tmp/pattern-dev.lua")
    assert.are.equal(0, rc, out)
    local ids = {}
    for id in out:gmatch("dev id (%d+):") do ids[#ids + 1] = tonumber(id) end
    assert.are.equal(2, #ids, out)
    assert.matches("dev id " .. ids[1] .. ": /dev/ublkb%d+ 8 MiB, [^\n]*pattern", out)
    check_device("/dev/ublkb" .. ids[1], 7)
    check_device("/dev/ublkb" .. ids[2], 3)
    rc, out = M.cli("del -a")
    assert.are.equal(0, rc, out)
    M.clean()
  end)

  it("serves add -t pattern --seed N, and refuses a seed its declaration does not allow", function()
    local id = M.add("-t pattern -s 8MiB --seed 200")
    check_device("/dev/ublkb" .. id, 200)
    local rc, out = M.cli("del -n %d", id)
    assert.are.equal(0, rc, out)
    rc, out = M.cli("add -t pattern -s 8MiB --seed 251")
    assert.are.equal(1, rc, out)
    assert.matches("bad parameter 'seed' = 251: for the pattern backend must be an integer from 0 to 250", out, 1, true)
    M.clean()
  end)
end)
