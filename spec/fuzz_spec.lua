-- Seeded property tests of everything that parses outside input on the Lua
-- side: device parameters, size strings, backends given to the state
-- transfer, and ublk.device itself.  Every input either works or fails
-- with a message that names what is wrong; none raises a Lua runtime error
-- ("attempt to ..."), and none leaves a device behind.  UBLK_FUZZ_ITERATIONS
-- sets the count (make fuzz runs many more); UBLK_FUZZ_SEED replays a run.
local ublk = require "ublk"
local params = require "ublk.params"
local transfer = require "ublk.transfer"

local N = tonumber(os.getenv("UBLK_FUZZ_ITERATIONS")) or 300
local SEED = tonumber(os.getenv("UBLK_FUZZ_SEED")) or os.time()

local FIELDS = { "size", "queues", "depth", "block_size", "max_io", "read_only", "discard",
  "pin", "id", "backend", "path", "direct", "create", "name", "sizee", "dpeth", 1, true }
local STRINGS = { "", " ", "1", "1.5Q", "256MiB", "1.5GiB", "0x10", "-1", "1e3", "nan", "inf",
  "4K", "512", "memory", "null", "file", "lua", "/dev/sdz", "\0", ("9"):rep(40), "1.1K" }

local function value(depth)
  local r = math.random(12)
  if r == 1 then return nil end
  if r == 2 then return math.random() < 0.5 end
  if r == 3 then return 0 / 0 end
  if r == 4 then return ({ 1 / 0, -1 / 0, 2 ^ 53, 2 ^ 63, -2 ^ 63 })[math.random(5)] end
  if r == 5 then return math.random(-5, 5000) end
  if r == 6 then return math.random() * 10 ^ math.random(0, 20) end
  if r <= 8 then return STRINGS[math.random(#STRINGS)] end
  if r == 9 and depth < 3 then
    local t = {}
    for _ = 1, math.random(0, 4) do
      local k = value(depth + 1)
      if k == nil or k ~= k then k = 1 end -- keys cannot be nil or NaN
      t[k] = value(depth + 1)
    end
    if math.random() < 0.2 then t.self = t end -- a cycle
    return t
  end
  if r == 10 then return function() end end
  if r == 11 then return coroutine.create(function() end) end
  return io.stderr -- userdata
end

local function table_of(fields)
  local t = {}
  for _ = 1, math.random(0, 8) do t[fields[math.random(#fields)]] = value(0) end
  return t
end

-- A failure is a message about the input, never a Lua runtime error.
local function sane(msg)
  msg = tostring(msg)
  assert.is_nil(msg:match("attempt to "), msg)
  assert.is_nil(msg:match("bad argument #"), msg)
  assert.is_nil(msg:match("stack overflow"), msg)
  return msg
end

describe("fuzz (seed " .. SEED .. ", " .. N .. " inputs each)", function()
  before_each(function() math.randomseed(SEED) end)

  it("params.validate: a normalised table or a message naming a field", function()
    for _ = 1, N do
      local t = math.random() < 0.9 and table_of(FIELDS) or value(0)
      local ok, p = pcall(params.validate, t, { max_queues = 4 })
      if ok then
        assert.is_true(p.size % p.block_size == 0 and p.queues >= 1 and p.queues <= 4)
      else
        assert.matches("^ublk: ", sane(p))
      end
    end
  end)

  it("parse_size: a whole number of bytes up to 2^53, or nil and a reason", function()
    for _ = 1, N do
      local v = value(0)
      if math.random() < 0.5 then
        v = tostring(math.random(0, 999)) .. (math.random() < 0.5 and "." .. math.random(0, 99) or "")
          .. ({ "", "K", "KiB", "m", "GB", "T", "Q", " ", "iB" })[math.random(9)]
      end
      local n, err = params.parse_size(v)
      if n then
        assert.is_true(n >= 0 and n <= 2 ^ 53 and n == math.floor(n), tostring(v))
      else
        assert.is_string(sane(err))
      end
    end
  end)

  it("transfer.pack: a chunk that rebuilds the tables, or a message naming the value", function()
    for _ = 1, N do
      local t = table_of(FIELDS)
      local ok, chunk = pcall(transfer.pack, t)
      if ok then
        local copy = transfer.unpack(chunk)
        for k, v in pairs(t) do
          if type(v) ~= "table" and type(v) ~= "function" and v == v then
            assert.are.equal(v, copy[k])
          end
        end
      else
        assert.matches("cannot copy", sane(chunk))
      end
    end
  end)

  it("ublk.device: raises naming a field, or fails operationally; no device is left", function()
    for _ = 1, N do
      local t = table_of(FIELDS)
      local ok, dev, err = pcall(ublk.device, t)
      if not ok then
        sane(dev)
      elseif dev then
        dev:close() -- a kernel with ublk: it worked, and it goes again
      else
        assert.matches("^E%u+: ", sane(err))
      end
    end
    assert.are.same({}, ublk.devices())
  end)
end)
