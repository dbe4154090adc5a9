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
  it("checks entries with XXH64 (xxhsum -H1), and still reads CRC32C (version 1)", function()
    local core = require "ublk.core"
    -- XXH64("abc") = 44bc2cf5ad770999, XXH64("") = ef46db3751d8e999: the low halves
    assert.are.equal(0xad770999, core.log_check("abc"))
    assert.are.equal(0x51d8e999, core.log_check(""))
    assert.are.equal(0xe3069283, clog.crc32c(0, "123456789"))
  end)

  it("reads a version 1 log (CRC32C checks), as an older ublk-lua wrote it", function()
    local ffi = require "ffi"
    local h = ffi.new("struct ublk_log_header")
    ffi.copy(h.magic, "UBLKLOG1", 8)
    h.version, h.block_size, h.size = 1, BS, 8192
    h.check = clog.crc32c(0, ffi.cast("const uint8_t *", h), 60)
    local e = ffi.new("struct ublk_log_head")
    e.magic, e.offset, e.len, e.data_len, e.type = 0x52454b42, 512, BS, BS, 1
    e.check = clog.crc32c(clog.crc32c(0, ffi.cast("const uint8_t *", e), 40), block("v"), BS)
    local path = tmp()
    local f = assert(io.open(path, "wb"))
    f:write(ffi.string(h, 64), ffi.string(e, 40), block("v"))
    f:close()
    local log = assert(clog.read(path))
    assert.are.same({ 1, 1, "write", 512 }, { log.version, #log.entries, log.entries[1].type,
      log.entries[1].offset })
    os.remove(path)
  end)

  it("tells the room a writer mapped ahead (zeros) from a torn entry", function()
    local path = make_log({ { "write", 0, block("a") } }, ("\0"):rep(3 * BS))
    local log = assert(clog.read(path))
    assert.are.same({ 1, 3 * BS, false }, { #log.entries, log.ignored, log.torn })
    -- a mark goes after the last entry, and the zeros go
    assert(clog.mark(path, "m"))
    log = assert(clog.read(path))
    assert.are.same({ "write", "mark", 0 }, { log.entries[1].type, log.entries[2].type,
      log.ignored })
    os.remove(path)
  end)

  it("refuses to mark a log another process records to", function()
    local path = make_log({ { "flush" } })
    -- the lock a writer holds while it records (record_writer.c)
    local holder = io.popen(("flock -x %s -c 'echo held; sleep 1'"):format(path))
    assert.are.equal("held", holder:read("*l"))
    local ok, err = clog.mark(path, "m")
    assert.is_nil(ok)
    assert.matches("^EBUSY: .*mark %-n ID NAME", err)
    holder:close()
    assert(clog.mark(path, "m"))
    os.remove(path)
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
    assert.are.same({ 60, true }, { log.ignored, log.torn })
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

describe("ublk.crash harsher samples", function()
  -- one epoch, ended by the log: a then b over the same block, c beside
  local path = make_log({ { "write", 0, block("a") }, { "write", 0, block("b") },
    { "write", 512, block("c") } })
  local log = assert(crash.read(path))
  local base = tmp()
  local f = assert(io.open(base, "wb"))
  f:write(("B"):rep(8192))
  f:close()
  teardown(function() os.remove(path) os.remove(base) end)

  it("reorder lands the kept writes in any order: the older of two may end on top", function()
    local older_on_top = false
    for k = 1, 200 do
      local st = crash.sample(log, 3, k, { reorder = true })
      local s = image_of(log, st)
      if st.keep[1] and st.keep[2] and s:sub(1, BS) == block("a") then older_on_top = true end
      -- in log order, b always wins
      local plain = crash.sample(log, 3, k, false)
      if plain.keep[1] and plain.keep[2] then assert.are.equal(block("b"), image_of(log, plain):sub(1, BS)) end
    end
    assert.is_true(older_on_top)
  end)

  it("lost blocks read as zeroes, or as garbage that is neither old nor new and the same from the id", function()
    local zeroed, garbage = false, false
    for k = 1, 100 do
      local st = crash.sample(log, 9, k, { lost = "zero" })
      local s = image_of(log, st, base)
      if st.cut >= 3 and not st.keep[3] then
        assert.are.equal(block("\0"), s:sub(BS + 1, 2 * BS))
        zeroed = true
      end
      st = crash.sample(log, 9, k, { lost = "garbage" })
      s = image_of(log, st, base)
      if st.cut >= 3 and not st.keep[3] then
        local b = s:sub(BS + 1, 2 * BS)
        assert.is_true(b ~= block("c") and b ~= block("B") and b ~= block("\0"))
        assert.are.equal(s, image_of(log, assert(crash.state(log, st.id)), base))
        garbage = true
      end
      -- a kept write still lands whole
      if st.keep[3] == true then assert.are.equal(block("c"), s:sub(BS + 1, 2 * BS)) end
    end
    assert.is_true(zeroed and garbage)
  end)

  it("reorder never lands an older write over a FUA write", function()
    -- a, then b over it with FUA, then c beside: b is durable once it
    -- completed, so a can never end on top of it
    local p2 = make_log({ { "write", 0, block("a") }, { "write", 0, block("b"), true },
      { "write", 512, block("c") } })
    local l2 = assert(crash.read(p2))
    local moved = false
    for k = 1, 200 do
      local st = crash.sample(l2, 5, k, { reorder = true, lost = "garbage" })
      if st.cut >= 2 then assert.are.equal(block("b"), image_of(l2, st):sub(1, BS), st.id) end
      if st.order and st.order[1] ~= 1 then moved = true end
    end
    os.remove(p2)
    -- (and c, after it, is never placed before it)
    assert.is_false(moved)
  end)

  it("copies a sparse base by its data, to the log's size", function()
    local sparse = tmp()
    local f = assert(io.open(sparse, "wb"))
    f:write(block("x"))
    f:seek("set", 4096)
    f:write(block("y"))
    f:seek("set", 16384 - 1)
    f:write("z") -- longer than the log's 8 KiB disk
    f:close()
    local s = image_of(log, crash.prefix(log, 0), sparse)
    assert.are.equal(8192, #s)
    assert.are.equal(block("x") .. ("\0"):rep(4096 - BS) .. block("y") .. ("\0"):rep(4096 - BS), s)
    os.remove(sparse)
  end)

  it("names the mode in the id, and rebuilds it from the id alone", function()
    local st = crash.sample(log, 4, 2, { torn = true, reorder = true, lost = "garbage", epoch = 1 })
    assert.are.equal("t4-2og@1", st.id)
    assert.are.same(st, assert(crash.state(log, st.id)))
    assert.are.equal("r4-2z", crash.sample(log, 4, 2, { lost = "zero" }).id)
    assert.is_nil((crash.state(log, "r4-2x")))
    assert.is_nil((crash.state(log, "r4-2@")))
    assert.is_nil((crash.sample(log, 4, 2, { epoch = 2 }))) -- the log has one epoch
  end)
end)

describe("ublk-lua crashtest", function()
  -- epoch 1: a, b; epoch 2: c, d; epoch 3: e.  The check fails on half a
  -- pair: a without b (or b without a), c without d.
  local path = make_log({ { "write", 0, block("a") }, { "write", 512, block("b") }, { "flush" },
    { "write", 1024, block("c") }, { "write", 1536, block("d") }, { "flush" },
    { "write", 2048, block("e") } })
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local check = dir .. "/pair.sh"
  local f = assert(io.open(check, "w"))
  f:write([[
has() { [ "$(dd if="$1" bs=512 skip=$2 count=1 status=none | head -c1)" = "$3" ]; }
x() { if has "$1" $2 $3; then echo 1; else echo 0; fi; }
[ "$(x "$1" 0 a)" = "$(x "$1" 1 b)" ] && [ "$(x "$1" 2 c)" = "$(x "$1" 3 d)" ] || { echo "pair: half a pair"; exit 1; }
]])
  f:close()
  teardown(function() os.execute("rm -rf " .. dir) os.remove(path) end)

  local function crashtest(extra, cmd)
    return require("shell").run(("build/ublk-lua crashtest %s --check '%s' --dir %s %s")
      :format(path, cmd or ("sh " .. check .. " {dev}"), dir, extra))
  end

  it("reports in the states' order whatever --jobs, and stops at the same first failure", function()
    -- the first state's check is the slowest: with 3 jobs the ones after
    -- it end first, and must wait for it to be reported
    local slow_first = ("case {state} in p3) sleep 1;; esac; sh %s {dev}"):format(check)
    local rc1, one = crashtest("--seed 2", slow_first)
    local rc3, three = crashtest("--seed 2 --jobs 3", slow_first)
    assert.are.equal(1, rc1, one)
    assert.are.equal(1, rc3, three)
    local function verdicts(out)
      return (out:gsub("%(%d+%.%d/s%) ", ""):gsub("image [^;]+;", "image X;"))
    end
    assert.are.equal(verdicts(one), verdicts(three))
    assert.matches("state 4/19 FAIL [^\n]* r2%-1: epoch 2 of 3", three)
    assert.matches("pair: half a pair", three, 1, true)
    assert.matches("check it again with:\nublk%-lua crashtest [^\n]*%-%-state r2%-1\n", three)
  end)

  it("--bisect finds an earlier epoch that fails, and its line fails again", function()
    local rc, out = crashtest("--seed 2 --bisect --jobs 2")
    assert.are.equal(1, rc, out)
    local id = out:match("the earliest failing epoch is 1 of 3: state (%S+);")
    assert.truthy(id and id:match("@1$"), out)
    local again
    rc, again = crashtest("--state " .. id)
    assert.are.equal(1, rc, again)
    assert.matches("FAIL", again)
  end)

  it("--json gives a line a state and a summary that names the failure and the earliest epoch", function()
    local json = require "ublk.json"
    local rc, out = crashtest("--seed 2 --bisect --json")
    assert.are.equal(1, rc, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = json.decode(line) end
    local last = lines[#lines].summary
    assert.are.same({ "fail", "r2-1", 1 }, { last.result, last.failed, last.earliest.epoch })
    assert.matches("%-%-state r2%-1$", last.again)
    assert.are.same({ "p3", "explore", true, 19 }, { lines[1].state, lines[1].phase, lines[1].ok, lines[1].total })
    assert.are.equal(last.checked, #lines - 1)
  end)

  it("passes every state of a check that holds, and says how many and how fast", function()
    local rc, out = crashtest("--torn --reorder --lost garbage --states 8 --jobs 2", "true")
    assert.are.equal(0, rc, out)
    assert.matches("crashtest: 11 states of [^\n]* pass %(7 entries, 3 epochs, %d+ s, [%d.]+ states/s, 2 jobs%)", out)
    assert.matches("t1%-1og", out)
  end)

  it("starts each check as a shell would: SIGPIPE at its default, a SIGTERM ends it", function()
    -- ublk-lua ignores SIGPIPE, and an ignored signal stays ignored
    -- through exec, where no shell may reset it: a check's `yes | head`
    -- would then see EPIPE instead of a quiet death
    local rc, out = crashtest("--jobs 2", [[m=$(awk "/^SigIgn/ { print \$2 }" /proc/$$/status);]]
      .. [[ [ $(( 0x$m & 0x1000 )) -eq 0 ] || { echo SIGPIPE ignored; exit 1; }]])
    assert.are.equal(0, rc, out)
    rc, out = crashtest("--jobs 2", "kill -TERM $$; true")
    assert.are.equal(1, rc, out)
    assert.matches("exit 143", out, 1, true)
  end)

  it("refuses a bad --lost, --jobs, or --bisect with --state, naming what is allowed", function()
    local rc, out = crashtest("--lost ones")
    assert.are.equal(2, rc)
    assert.matches("--lost is zero or garbage", out, 1, true)
    rc, out = crashtest("--jobs 0")
    assert.are.equal(2, rc)
    assert.matches("--jobs needs a whole number from 1", out, 1, true)
    rc, out = crashtest("--bisect --state p3")
    assert.are.equal(2, rc)
    assert.matches("--bisect searches the epochs before a failure", out, 1, true)
  end)

  it("--json carries a check's output as valid UTF-8, an invalid byte as U+FFFD", function()
    local json = require "ublk.json"
    local rc, out = crashtest("--json --state p3", [[printf "caf\303\251 \377bad\n"; exit 1]])
    assert.are.equal(1, rc, out)
    local first = json.decode(out:match("^[^\n]+"))
    assert.are.equal("caf\195\169 \239\191\189bad\n", first.output)
  end)

  it("a termination signal kills the checks running and leaves no file", function()
    local marker = "ublk-crash-spec-" .. os.time()
    local sub = dir .. "/int"
    local shell = require "shell"
    assert(os.execute("mkdir -p " .. sub))
    local rc, out = shell.run(("build/ublk-lua crashtest %s --check 'sleep 30 # %s' --dir %s --jobs 2 & "
      .. "pid=$!; sleep 1; kill -INT $pid; wait $pid"):format(path, marker, sub))
    assert.are.equal(1, rc, out)
    assert.matches("stopped by a termination signal; the checks still running were killed", out, 1, true)
    -- ([s]: the pattern does not match the shell that runs pgrep)
    local _, running = shell.run(("pgrep -f '[s]leep 30 # %s'"):format(marker))
    assert.are.equal("", running)
    local _, left = shell.run("ls -A " .. sub)
    assert.are.equal("", left)
  end)

  it("leaves only the failing states' images", function()
    crashtest("--seed 2 --bisect --jobs 3")
    local p = io.popen("ls " .. dir)
    local names = p:read("*a")
    p:close()
    assert.is_nil(names:match("%.marks") or names:match("%.out") or names:match("%.rc") or names:match("%.%d+%.img"),
      names)
  end)
end)
