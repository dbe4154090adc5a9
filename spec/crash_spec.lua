-- ublk.crash on the host: the log reader (checksums, a torn tail) and the
-- crash states (flush boundaries, seeded samples, torn writes, marks),
-- on logs built here byte by byte as the recorder writes them.  No kernel.
local clog = require "ublk.crash_log"
local crash = require "ublk.crash"

local BS = 512

local function tmp() return os.tmpname() end

-- a log of `entries` ({ type, offset, data | len, fua }) for a 8 KiB disk
local function make_log(entries, tail)
  local path = tmp()
  local f = assert(io.open(path, "wb"))
  f:write(clog.header(BS, 8192))
  for _, e in ipairs(entries) do
    local data = e[3]
    if type(data) == "number" then f:write(clog.entry(e[1], e[2], data, nil, e[4]))
    else f:write(clog.entry(e[1], e[2], data and #data or 0, data, e[4])) end
  end
  if tail then f:write(tail) end
  f:close()
  return path
end

local function image_of(log, st, base)
  local img = tmp()
  assert(crash.write_state(log, st, img, { base = base }))
  local s = assert(io.open(img, "rb")):read("*a")
  os.remove(img)
  return s
end

local function block(c) return c:rep(BS) end

describe("ublk.crash_log", function()
  it("computes CRC32C (the check value of '123456789')", function()
    assert.are.equal(0xe3069283, clog.crc32c(0, "123456789"))
  end)

  it("reads every entry with its fields, and stops at a torn tail", function()
    local full = clog.entry("write", 1024, BS, block("x"))
    local path = make_log({ { "write", 0, block("a"), true }, { "flush" },
      { "discard", 512, 1024 }, { "mark", 0, "here" } }, full:sub(1, 60))
    local log = assert(clog.read(path))
    assert.are.equal(8192, log.size)
    assert.are.equal(BS, log.block_size)
    assert.are.equal(4, #log.entries)
    local e = log.entries
    assert.are.same({ "write", true, 0, BS }, { e[1].type, e[1].fua, e[1].offset, e[1].len })
    assert.are.same({ "flush", "discard", 512, 1024 }, { e[2].type, e[3].type, e[3].offset, e[3].len })
    assert.are.equal("here", e[4].name)
    assert.are.equal(60, log.ignored)
    os.remove(path)
  end)

  it("stops at the first entry whose checksum does not match", function()
    local path = make_log({ { "write", 0, block("a") }, { "write", 512, block("b") } })
    local f = assert(io.open(path, "r+b"))
    f:seek("set", 64 + 40 + BS + 40 + 7) -- a byte of the second write's data
    f:write("Z")
    f:close()
    local log = assert(clog.read(path))
    assert.are.equal(1, #log.entries)
    assert.are.equal(40 + BS, log.ignored)
    os.remove(path)
  end)

  it("refuses a file that is not a log, naming why", function()
    local path = tmp()
    local f = assert(io.open(path, "wb"))
    f:write(("\0"):rep(100))
    f:close()
    local log, err = clog.read(path)
    assert.is_nil(log)
    assert.matches("EINVAL: log .*UBLKLOG1", err)
    os.remove(path)
  end)

  it("appends marks after what is there", function()
    local path = make_log({ { "flush" } })
    assert(clog.mark(path, "one"))
    assert(clog.mark(path, "two"))
    local log = assert(clog.read(path))
    assert.are.same({ "flush", "mark", "mark" }, { log.entries[1].type, log.entries[2].type,
      log.entries[3].type })
    assert.are.equal("two", log.entries[3].name)
    assert.has_error(function() clog.mark(path, "") end)
    os.remove(path)
  end)
end)

describe("ublk.crash states", function()
  -- epoch 1: a ; epoch 2: b, c (FUA), mark m ; epoch 3: d over a (no flush after)
  local path = make_log({ { "write", 0, block("a") }, { "flush" },
    { "write", 512, block("b") }, { "write", 1024, block("c"), true }, { "mark", 0, "m" },
    { "flush" }, { "write", 0, block("d") } })
  local log = assert(crash.read(path))
  teardown(function() os.remove(path) end)

  it("splits the log into epochs at each FLUSH", function()
    assert.are.same({ { lo = 0, hi = 2 }, { lo = 2, hi = 6 }, { lo = 6, hi = 7 } },
      crash.epochs(log))
  end)

  it("enumerates every flush boundary and the end first, in order", function()
    local ids = {}
    for st in crash.states(log, { states = 0 }) do ids[#ids + 1] = st.id end
    assert.are.same({ "p2", "p6", "p7" }, ids)
  end)

  it("writes a flush boundary's state: everything before it, nothing after", function()
    local s = image_of(log, crash.prefix(log, 2))
    assert.are.equal(8192, #s)
    assert.are.equal(block("a") .. ("\0"):rep(8192 - BS), s)
    s = image_of(log, crash.prefix(log, 7))
    assert.are.equal(block("d") .. block("b") .. block("c"), s:sub(1, 3 * BS))
  end)

  it("writes over a base image, never changing the log", function()
    local base = tmp()
    local f = assert(io.open(base, "wb"))
    f:write(("B"):rep(8192))
    f:close()
    local before = assert(io.open(path, "rb")):read("*a")
    local s = image_of(log, crash.prefix(log, 2), base)
    assert.are.equal(block("a") .. ("B"):rep(8192 - BS), s)
    assert.are.equal(before, assert(io.open(path, "rb")):read("*a"))
    os.remove(base)
  end)

  it("samples keep the durable prefix, every FUA write before the cut, and only writes before the cut", function()
    local seen = {}
    for k = 1, 200 do
      local st = crash.sample(log, 7, k, false)
      local s = image_of(log, st)
      -- epoch 1's write is durable in every state of a later epoch
      if st.epoch == 2 then assert.are.equal(block("a"), s:sub(1, BS)) end
      if st.epoch == 3 then assert.is_true(s:sub(1, BS) == block("a") or s:sub(1, BS) == block("d")) end
      if st.epoch == 2 and st.cut >= 4 then assert.are.equal(block("c"), s:sub(2 * BS + 1, 3 * BS)) end
      if st.epoch == 2 and st.cut < 4 then assert.are.equal(block("\0"), s:sub(2 * BS + 1, 3 * BS)) end
      if st.epoch == 2 then
        local b = s:sub(BS + 1, 2 * BS)
        seen[b == block("b") and "b kept" or "b lost"] = true
      end
    end
    assert.is_true(seen["b kept"] and seen["b lost"])
  end)

  it("rebuilds a sample from its id alone", function()
    local st = crash.sample(log, 5, 3, true)
    local again = assert(crash.state(log, st.id))
    assert.are.same(st, again)
    assert.are.equal(image_of(log, st), image_of(log, again))
    assert.is_nil((crash.state(log, "x1")))
    assert.is_nil((crash.state(log, "p99")))
  end)

  it("tears writes at block granularity: each block old or new", function()
    local p2 = make_log({ { "write", 0, block("a") .. block("b") .. block("c") .. block("d") } })
    local l2 = assert(crash.read(p2))
    local torn = 0
    for k = 1, 100 do
      local s = image_of(l2, crash.sample(l2, 1, k, true))
      local new, old = 0, 0
      for i, c in ipairs({ "a", "b", "c", "d" }) do
        local got = s:sub((i - 1) * BS + 1, i * BS)
        assert.is_true(got == block(c) or got == block("\0"))
        if got == block(c) then new = new + 1 else old = old + 1 end
      end
      if new > 0 and old > 0 then torn = torn + 1 end
    end
    assert.is_true(torn > 0)
    os.remove(p2)
  end)

  it("lists the marks made before a state's power cut", function()
    assert.are.same({}, crash.marks(log, crash.prefix(log, 2)))
    assert.are.same({ "m" }, crash.marks(log, crash.prefix(log, 6)))
    assert.are.equal(5, crash.find(log, "m"))
    assert.are.equal(3, crash.find(log, "3"))
    assert.is_nil((crash.find(log, "nope")))
  end)
end)
