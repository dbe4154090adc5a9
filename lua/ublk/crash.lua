-- ublk.crash: the crash states of a recorded log (docs/crash-testing.md),
-- and each written out onto an image file.  No kernel; ublk.core only for
-- the log's layout (ublk.crash_log).
--
--   local crash = require "ublk.crash"
--   local log = assert(crash.read(path))
--   for st in crash.states(log, { seed = 1, states = 20, torn = true, reorder = true }) do
--     assert(crash.write_state(log, st, "/tmp/state.img", { base = "base.img" }))
--     ...check /tmp/state.img, crash.marks(log, st) says what was reported durable...
--   end
--
-- A state is { id, kind = "flush" | "end" | "sample", epoch, lo, cut, keep,
-- order, lost }: entries 1..lo all applied (the durable prefix, ending at a
-- FLUSH), then of those in lo+1..cut the writes `keep` names (true: whole;
-- a table of block numbers: only those blocks, a torn write), in log order
-- or in `order` (the entry ids, when the sample reorders).  A write it does
-- not keep leaves the old bytes, or with `lost` its blocks read as zeroes
-- ("zero") or as random bytes ("garbage").  Its id alone rebuilds it from
-- the same log: "pN" (the prefix of N entries), or a sample
-- "[rt]S-K[o][z|g][@E]": sample K of seed S without (r) or with (t) torn
-- writes, reordered (o), lost blocks zeroes (z) or garbage (g), drawn from
-- epoch E only (@E, as --bisect draws).
local bit = require "bit"
local ffi = require "ffi"
local clog = require "ublk.crash_log"

local M = { read = clog.read }

require "ublk.libc" -- open, pread, pwrite, lseek, truncate (ffi.C)

local DATA = { write = true, discard = true, write_zeroes = true }

-- The epochs: { lo, hi } ranges of entry ids, each ended by a FLUSH (the
-- last one may end with the log instead).  Cached on the log.
function M.epochs(log)
  if log.epochs then return log.epochs end
  local t, lo = {}, 0
  for _, e in ipairs(log.entries) do
    if e.type == "flush" then
      t[#t + 1] = { lo = lo, hi = e.id }
      lo = e.id
    end
  end
  if lo < #log.entries then t[#t + 1] = { lo = lo, hi = #log.entries } end
  log.epochs = t
  return t
end

local function epoch_of(log, id)
  for i, ep in ipairs(M.epochs(log)) do
    if id > ep.lo and id <= ep.hi then return i end
  end
  return 0
end

-- The prefix of n entries: what the disk holds if everything up to entry
-- n became durable (a legal state only at a FLUSH, or at the end).
function M.prefix(log, n)
  if n < 0 or n > #log.entries or n ~= math.floor(n) then
    error(("crash: entry %s is not in the log (1 .. %d)"):format(tostring(n), #log.entries), 2)
  end
  local e = log.entries[n]
  return { id = "p" .. n, kind = e and e.type == "flush" and "flush" or "end",
    epoch = epoch_of(log, n), lo = n, cut = n, keep = {} }
end

-- A 32-bit xorshift, seeded per sample, so that sample K of seed S is the
-- same whichever samples were drawn before it.
local function rng(seed, k)
  local x = bit.tobit(seed * 2654435761 + k * 40503 + 12345)
  if x == 0 then x = 1 end
  local function nxt()
    x = bit.bxor(x, bit.lshift(x, 13))
    x = bit.bxor(x, bit.rshift(x, 17))
    x = bit.bxor(x, bit.lshift(x, 5))
    return x % 2 ^ 32
  end
  for _ = 1, 4 do nxt() end
  return function(n) return nxt() % n end -- 0 .. n-1
end

local LOST_LETTER = { zero = "z", garbage = "g" }

-- Sample k of seed: an epoch with writes, a cut inside it (the power
-- goes after entry `cut`), and of the writes before the cut every FUA
-- one and a random subset of the others.  mode (a table, or true for
-- { torn = true }): torn, some blocks of a kept write old, some new;
-- reorder, the kept writes land in a random order; lost = "zero" |
-- "garbage", what a lost block reads as; epoch, draw from that epoch
-- only (nil if it has no write).
function M.sample(log, seed, k, mode)
  if type(mode) ~= "table" then mode = { torn = mode and true or nil } end
  local torn = mode.torn
  local eps, with = M.epochs(log), {}
  for i, ep in ipairs(eps) do
    for id = ep.lo + 1, ep.hi do
      if DATA[log.entries[id].type] and (not mode.epoch or mode.epoch == i) then
        with[#with + 1] = i
        break
      end
    end
  end
  local id = ("%s%d-%d%s%s%s"):format(torn and "t" or "r", seed, k, mode.reorder and "o" or "",
    LOST_LETTER[mode.lost] or "", mode.epoch and "@" .. mode.epoch or "")
  if #with == 0 then return nil end
  local r = rng(seed, k)
  local ei = with[r(#with) + 1]
  local ep = eps[ei]
  local cut = ep.lo + 1 + r(ep.hi - ep.lo)
  local keep = {}
  for n = ep.lo + 1, cut do
    local e = log.entries[n]
    if DATA[e.type] then
      local pick = e.fua and 1 or r(torn and 3 or 2) -- 0 lost, 1 whole, 2 torn
      if pick == 1 then keep[n] = true
      elseif pick == 2 then
        local blocks, any = {}, false
        for b = 0, math.ceil(e.len / log.block_size) - 1 do
          if r(2) == 1 then blocks[#blocks + 1] = b any = true end
        end
        keep[n] = any and blocks or nil
      end
    end
  end
  local order
  if mode.reorder then
    -- the writes of the epoch, kept or lost, land in a shuffled order,
    -- except across a FUA write: it is durable when it completes, so no
    -- older write may land over it, and no newer one before it
    order = {}
    local run = {}
    local function shuffled()
      for i = #run, 2, -1 do
        local j = r(i) + 1
        run[i], run[j] = run[j], run[i]
      end
      for _, n in ipairs(run) do order[#order + 1] = n end
      run = {}
    end
    for n = ep.lo + 1, cut do
      local e = log.entries[n]
      if DATA[e.type] then
        if e.fua then
          shuffled()
          order[#order + 1] = n
        else
          run[#run + 1] = n
        end
      end
    end
    shuffled()
  end
  return { id = id, kind = "sample", epoch = ei, lo = ep.lo, cut = cut, keep = keep,
    order = order, lost = mode.lost, seed = seed, k = k }
end

-- states(log, opts) -> iterator of states: every FLUSH boundary and the
-- end of the log first, then opts.states samples (default 16) of seed
-- opts.seed (default 1); opts is also their mode (M.sample: torn,
-- reorder, lost).
function M.states(log, opts)
  opts = opts or {}
  local list = {}
  for _, ep in ipairs(M.epochs(log)) do list[#list + 1] = ep.hi end
  local i, k, n = 0, 0, opts.states or 16
  return function()
    i = i + 1
    if list[i] then return M.prefix(log, list[i]) end
    while k < n do
      k = k + 1
      local st = M.sample(log, opts.seed or 1, k, opts)
      if st then return st end
    end
  end
end

-- The state an id names, or nil, why.
function M.state(log, id)
  local n = tostring(id):match("^p(%d+)$")
  if n then
    n = tonumber(n)
    if n > #log.entries then return nil, ("state %s: the log has %d entries"):format(id, #log.entries) end
    return M.prefix(log, n)
  end
  local kind, seed, k, o, l, rest = tostring(id):match("^([rt])(%d+)%-(%d+)(o?)([zg]?)(.*)$")
  local epoch = rest and rest:match("^@(%d+)$")
  if kind and (rest == "" or epoch) then
    local st = M.sample(log, tonumber(seed), tonumber(k), { torn = kind == "t", reorder = o == "o",
      lost = (l == "z" and "zero") or (l == "g" and "garbage") or nil, epoch = tonumber(epoch) })
    if st then return st end
    return nil, ("state %s: the log has no write to lose%s"):format(id, epoch and " in epoch " .. epoch or "")
  end
  return nil, ("state '%s' is not a state id (pN, or a sample rSEED-K or tSEED-K, then o, z or g, "
    .. "then @EPOCH)"):format(tostring(id))
end

-- The names of the marks made before the state's cut: what the workload
-- was told was durable by then (a mark is made after its fsync returned,
-- so its FLUSH is before it, hence within the durable prefix).
function M.marks(log, st)
  local t = {}
  for n = 1, st.cut do
    local e = log.entries[n]
    if e.type == "mark" then t[#t + 1] = e.name end
  end
  return t
end

-- The entry a mark names (its last occurrence) or a number names.
function M.find(log, to)
  local n = tonumber(to)
  if n then
    if n >= 0 and n <= #log.entries and n == math.floor(n) then return n end
    return nil, ("entry %s is not in the log (0 .. %d)"):format(to, #log.entries)
  end
  for i = #log.entries, 1, -1 do
    local e = log.entries[i]
    if e.type == "mark" and e.name == to then return i end
  end
  return nil, ("no mark '%s' in the log"):format(tostring(to))
end

-- ---- writing a state out ----

local CHUNK = 1024 * 1024
local ZEROES = ("\0"):rep(CHUNK)

-- image := base, or zeroes, of the log's size, sparse: only the base's
-- data extents are read (SEEK_DATA / SEEK_HOLE), and of them only chunks
-- that are not all zeroes are written.  (Reading a sparse 320 MiB XFS
-- base whole took 0.7 s of system time a state on the host.)
local O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC, O_CLOEXEC = 0, 1, 0x40, 0x200, 0x80000
local SEEK_END, SEEK_DATA, SEEK_HOLE = 2, 3, 4
local chunk = ffi.new("uint8_t[?]", CHUNK)

-- "ENAME: what path", of the errno the last call left
local function oserr(what, path)
  local e = ffi.errno()
  return ("%s: %s %s"):format(require("ublk.errno")[e] or "errno " .. e, what, path)
end

local function copy_base(log, image, base)
  local C = ffi.C
  local out = C.open(image, bit.bor(O_WRONLY, O_CREAT, O_TRUNC, O_CLOEXEC), ffi.new("int", 420))
  if out < 0 then return nil, oserr("image", image) end
  local function fail(msg) C.close(out) os.remove(image) return nil, msg end
  if base then
    local inp = C.open(base, bit.bor(O_RDONLY, O_CLOEXEC))
    if inp < 0 then return fail(oserr("base", base)) end
    local size, pos = C.lseek(inp, 0, SEEK_END), 0
    if size < 0 then
      local msg = oserr("base", base)
      C.close(inp)
      return fail(msg)
    end
    while pos < size do
      local from = C.lseek(inp, pos, SEEK_DATA)
      if from < 0 then
        if ffi.errno() == 6 then break end -- ENXIO: no data after pos
        from = pos -- no SEEK_DATA here: every byte is data
      end
      local to = C.lseek(inp, from, SEEK_HOLE)
      if to < 0 then to = size end
      while from < to do
        local n = tonumber(C.pread(inp, chunk, math.min(CHUNK, tonumber(to - from)), from))
        if n <= 0 then
          local msg = oserr("base", base)
          C.close(inp)
          return fail(msg)
        end
        if ffi.string(chunk, n) ~= (n == CHUNK and ZEROES or ZEROES:sub(1, n)) and C.pwrite(out, chunk, n, from) ~= n then
          local msg = ffi.errno() ~= 0 and oserr("image", image) or "ENOSPC: image " .. image .. ": short write"
          C.close(inp)
          return fail(msg)
        end
        from = from + n
      end
      pos = to
    end
    C.close(inp)
  end
  C.close(out)
  if C.truncate(image, log.size) ~= 0 then return nil, oserr("cannot size image", image) end
  return true
end

local function apply(log, lf, out, e, blocks)
  local bs = log.block_size
  if e.type == "write" then
    lf:seek("set", e.pos)
    local data = lf:read(e.len)
    if not blocks then
      out:seek("set", e.offset)
      out:write(data)
    else
      for _, b in ipairs(blocks) do
        out:seek("set", e.offset + b * bs)
        out:write(data:sub(b * bs + 1, (b + 1) * bs))
      end
    end
  elseif e.type == "discard" or e.type == "write_zeroes" then
    -- the model: as a write of zeroes (what the memory and file backends read back)
    local function zero(off, len)
      out:seek("set", off)
      while len > 0 do
        local n = math.min(len, CHUNK)
        out:write(n == CHUNK and ZEROES or ZEROES:sub(1, n))
        len = len - n
      end
    end
    if not blocks then zero(e.offset, e.len)
    else for _, b in ipairs(blocks) do zero(e.offset + b * bs, bs) end end
  end
end

-- What a lost block of entry n reads as under st.lost: zeroes, or bytes
-- drawn from the state's seed, sample, entry and block (the same each
-- time the id is rebuilt).
-- (One block of garbage per entry, repeated over its lost blocks, and
-- each run of lost blocks written in chunks: a lost discard of a whole
-- disk is millions of blocks.)
local function lose(log, out, st, n, kept)
  local e, bs = log.entries[n], log.block_size
  local landed = {}
  if type(kept) == "table" then for _, b in ipairs(kept) do landed[b] = true end end
  local pattern = ZEROES:sub(1, bs)
  if st.lost == "garbage" then
    local r, t = rng(st.seed, st.k * 1000003 + n * 4099), {}
    for i = 1, bs do t[i] = string.char(r(256)) end
    pattern = table.concat(t)
  end
  local per_chunk = math.max(1, math.floor(CHUNK / bs))
  local blocks = math.ceil(e.len / bs)
  local b = 0
  while b < blocks do
    if landed[b] then b = b + 1
    else
      local first = b
      while b < blocks and not landed[b] and b - first < per_chunk do b = b + 1 end
      out:seek("set", e.offset + first * bs)
      out:write((pattern:rep(b - first)):sub(1, math.min((b - first) * bs, e.len - first * bs)))
    end
  end
end

-- write_state(log, st, image, opts) -> true | nil, "ENAME: message"
-- Writes state st onto image (made anew: a copy of opts.base, or
-- zeroes).  The log is only read.
function M.write_state(log, st, image, opts)
  opts = opts or {}
  local ok, err = copy_base(log, image, opts.base)
  if not ok then return nil, err end
  local lf, lerr = io.open(log.path, "rb")
  if not lf then os.remove(image) return nil, "ENOENT: log " .. lerr end
  local out, oerr = io.open(image, "r+b")
  if not out then lf:close() os.remove(image) return nil, "EIO: image " .. tostring(oerr) end
  for n = 1, st.lo do apply(log, lf, out, log.entries[n]) end
  local order = st.order
  if not order then
    order = {}
    for n = st.lo + 1, st.cut do order[#order + 1] = n end
  end
  for _, n in ipairs(order) do
    local k = st.keep[n]
    if k then apply(log, lf, out, log.entries[n], k ~= true and k or nil) end
    if st.lost and k ~= true and DATA[log.entries[n].type] then lose(log, out, st, n, k) end
  end
  lf:close()
  local cok, cerr = out:close()
  if not cok then os.remove(image) return nil, "EIO: image " .. image .. ": " .. tostring(cerr) end
  return true
end

-- A line saying what a state is, for progress and failures.
function M.describe(log, st)
  local eps = M.epochs(log)
  if st.kind ~= "sample" then
    return ("%s: every entry up to %d (%s %d of %d)"):format(st.id, st.lo,
      st.kind == "flush" and "flush" or "end, epoch", st.epoch, #eps)
  end
  local kept, torn = 0, 0
  for _, v in pairs(st.keep) do
    kept = kept + 1
    if v ~= true then torn = torn + 1 end
  end
  return ("%s: epoch %d of %d (entries %d..%d), power cut after entry %d, %d writes kept%s%s%s")
    :format(st.id, st.epoch, #eps, st.lo + 1, eps[st.epoch].hi, st.cut, kept,
      torn > 0 and (", %d torn"):format(torn) or "", st.order and ", landed reordered" or "",
      st.lost and (", lost blocks read as %s"):format(st.lost == "zero" and "zeroes" or "garbage") or "")
end

return M
