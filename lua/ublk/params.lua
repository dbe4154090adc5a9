-- ublk.params: the single place where device parameters are validated and
-- normalised, before any device is created.  Everything downstream (the C
-- runtime, the backends, the CLI) may then trust the normalised table and
-- never re-check types or ranges.
--
-- Pure Lua, Lua 5.1 / LuaJIT compatible.  LuaJIT numbers are doubles, so
-- byte counts are only exact up to 2^53; every size is checked against that.

local params = {}

local floor, huge = math.floor, math.huge
local format, concat, sort = string.format, table.concat, table.sort

local KiB, MiB, GiB, TiB = 1024, 1024 ^ 2, 1024 ^ 3, 1024 ^ 4

-- Largest byte count a double holds exactly (2^53 = 8 PiB).
local MAX_BYTES = 2 ^ 53
local MAX_BYTES_DIGITS = "9007199254740992"

-- Unit suffixes, matched case-insensitively.  KB/MB/GB/TB are powers of
-- 1024 too: that is the block-device convention (util-linux, lsblk, dd),
-- and nobody sizes a block device in powers of 1000.  Values are the
-- power-of-two exponent, because exact fraction handling needs it.
local UNIT_SHIFT = {
  [""] = 0, b = 0,
  k = 10, kb = 10, kib = 10,
  m = 20, mb = 20, mib = 20,
  g = 30, gb = 30, gib = 30,
  t = 40, tb = 40, tib = 40,
}

---------------------------------------------------------------------------
-- Sizes
---------------------------------------------------------------------------

local function is_int(v)
  -- floor(inf) == inf, so rule infinities out explicitly; NaN fails ==.
  return type(v) == "number" and v == floor(v) and v ~= huge and v ~= -huge
end

-- Renders a value for an error message: strings quoted so "" and " " are
-- visible, whole numbers without exponent so 1e15 reads as 1000000000000000.
local function show(v)
  if type(v) == "string" then return format("%q", v) end
  if is_int(v) and v > -2 ^ 63 and v < 2 ^ 63 then return format("%.0f", v) end
  if type(v) == "table" or type(v) == "function" or type(v) == "userdata"
    or type(v) == "thread" then
    return "<" .. type(v) .. ">"
  end
  return tostring(v)
end

-- Divides a decimal digit string by 5; nil if it does not divide evenly.
-- Done on strings because fraction digits can outgrow a double's precision.
local function div5(digits)
  local out, rem = {}, 0
  for i = 1, #digits do
    local x = rem * 10 + digits:byte(i) - 48
    out[i] = floor(x / 5)
    rem = x % 5
  end
  if rem ~= 0 then return nil end
  return concat(out)
end

-- Bytes contributed by the fraction "0.<digits>" of a unit 2^shift, or nil
-- if that is not a whole number.  0.d1..dn * 2^shift = f * 2^shift / 10^n:
-- with trailing zeros stripped f is not a multiple of 10, so if 5 divides
-- f then f is odd, and the result is whole iff 5^n | f and n <= shift.
-- Exact, unlike tonumber("1.1") * 1024.
local function fraction_bytes(digits, shift)
  digits = digits:gsub("0+$", "")
  local n = #digits
  if n == 0 then return 0 end
  if n > shift then return nil end
  for _ = 1, n do
    digits = div5(digits)
    if not digits then return nil end
  end
  -- Quotient is < 2^n <= 2^40, so tonumber is exact.
  return tonumber(digits) * 2 ^ (shift - n)
end

-- Whole part as a number, or nil if above 2^53.  Compared as a string
-- first because tonumber would round 9007199254740993 down to 2^53.
local function whole_number(digits)
  digits = digits:gsub("^0+", "")
  if #digits > #MAX_BYTES_DIGITS
    or (#digits == #MAX_BYTES_DIGITS and digits > MAX_BYTES_DIGITS) then
    return nil
  end
  return tonumber(digits) or 0
end

local function parse_size_string(s)
  if s:match("^%s*$") then return nil, "empty size" end
  if s:match("^%s*%-") then return nil, "must not be negative" end
  local int, frac, unit = s:match("^%s*(%d+)%.(%d+)%s*(%a*)%s*$")
  if not int then
    int, unit = s:match("^%s*(%d+)%s*(%a*)%s*$")
    frac = ""
  end
  if not int then
    return nil, "not a size (expected e.g. 4096, \"512K\", \"256MiB\", \"1.5G\")"
  end
  local shift = UNIT_SHIFT[unit:lower()]
  if not shift then
    return nil, "unknown unit '" .. unit .. "' (use B, K, M, G, T, or KiB/KB ...)"
  end
  local whole, part = whole_number(int), fraction_bytes(frac, shift)
  if not part then return nil, "is not a whole number of bytes" end
  -- whole * 2^shift is exact (power-of-two scaling); compare against
  -- MAX_BYTES - part so the sum itself never has to be rounded.
  if not whole or whole * 2 ^ shift > MAX_BYTES - part then
    return nil, "is larger than 2^53 bytes (8 PiB)"
  end
  return whole * 2 ^ shift + part
end

-- parse_size(v) -> bytes | nil, message.  Accepts a non-negative integer
-- number of bytes or a size string.  Bad input is an expected failure
-- (it comes from users, config files, the command line), hence nil, msg.
function params.parse_size(v)
  if type(v) == "string" then return parse_size_string(v) end
  if type(v) ~= "number" then
    return nil, "expected a number of bytes or a size string, got a " .. type(v)
  end
  if v ~= v then return nil, "is not a number (NaN)" end
  if v < 0 then return nil, "must not be negative" end
  if v == huge then return nil, "must be finite" end
  if v ~= floor(v) then return nil, "is not a whole number of bytes" end
  if v > MAX_BYTES then return nil, "is larger than 2^53 bytes (8 PiB)" end
  return v
end

local FORMAT_UNITS = {
  { TiB, "TiB" }, { GiB, "GiB" }, { MiB, "MiB" }, { KiB, "KiB" },
}

-- format_size(bytes) -> "256 MiB": the largest binary unit that divides
-- evenly, else plain bytes, so the text is exact (never "1.5 GiB").
function params.format_size(bytes)
  if not is_int(bytes) or bytes < 0 then return show(bytes) end
  if bytes > 0 then
    for _, u in ipairs(FORMAT_UNITS) do
      if bytes % u[1] == 0 then
        return format("%.0f %s", bytes / u[1], u[2])
      end
    end
  end
  return format("%.0f B", bytes)
end

---------------------------------------------------------------------------
-- Field table
---------------------------------------------------------------------------

-- Defaults in normalised form: what validate() puts in its output.
-- size, path and name have no default (size may come from the backend).
local DEFAULTS = {
  block_size = 512,
  queues = 1,
  depth = 128,
  max_io = 512 * KiB,
  read_only = false,
  discard = true,
  pin = true,
  id = -1,            -- -1: the kernel picks the device number
  backend = "memory",
  direct = false,
}

local DEFAULT_LIMITS = {
  max_queues = 64,    -- the runtime passes the real limit (e.g. nr CPUs)
  max_depth = 4096,   -- UBLK_MAX_QUEUE_DEPTH
  max_io_max = 32 * MiB,
}

local MAX_ID = 1048575  -- 2^20 - 1: the minor-number space ublk uses

local FIELDS = {
  "backend", "block_size", "depth", "direct", "discard", "id", "max_io",
  "name", "path", "pin", "queues", "read_only", "size",
}
sort(FIELDS)

local KNOWN = {}
for _, f in ipairs(FIELDS) do KNOWN[f] = true end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- Exported as copies: validate() reads the private tables, so a caller
-- scribbling on params.defaults cannot change what later devices get.
params.fields = copy(FIELDS)
params.defaults = copy(DEFAULTS)

---------------------------------------------------------------------------
-- Validation
---------------------------------------------------------------------------

-- Internal failures are raised as a tagged table and turned into a string
-- error at level 2 by validate(), so the position blames validate's caller
-- however deep the check that failed.
local Failure = {}

local function fail(msg)
  error(setmetatable({ msg = "ublk: " .. msg }, Failure), 0)
end

local function bad(field, value, rule)
  fail(format("bad parameter '%s' = %s: %s", field, show(value), rule))
end

-- Levenshtein distance, two rows; names are short so this is cheap.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

local function suggest(key)
  local best, best_d = nil, 3  -- only suggest within distance 2
  for _, f in ipairs(FIELDS) do  -- sorted, so ties pick a stable name
    local d = distance(key:lower(), f)
    -- d < #key: "x" is 2 edits from "id" but that is no typo of it.
    if d < best_d and d < #key then best, best_d = f, d end
  end
  return best
end

local function check_unknown(t)
  local unknown = {}
  for k in pairs(t) do
    if not KNOWN[k] then unknown[#unknown + 1] = k end
  end
  if #unknown == 0 then return end
  -- pairs() order is arbitrary; report the same key every run.
  sort(unknown, function(a, b) return tostring(a) < tostring(b) end)
  local k = unknown[1]
  if type(k) ~= "string" then
    fail(format("unknown parameter [%s] (parameters are named fields: %s)",
      show(k), concat(FIELDS, ", ")))
  end
  local hint = suggest(k)
  if hint then
    fail(format("unknown parameter '%s' (did you mean '%s'?)", k, hint))
  end
  fail(format("unknown parameter '%s' (known: %s)", k, concat(FIELDS, ", ")))
end

local function check_int(field, v, lo, hi)
  if not is_int(v) or v < lo or v > hi then
    bad(field, v, format("must be an integer from %s to %s", show(lo), show(hi)))
  end
  return v
end

local function check_bool(field, v)
  if type(v) ~= "boolean" then bad(field, v, "must be true or false") end
  return v
end

local function check_size(field, v)
  local bytes, err = params.parse_size(v)
  if not bytes then bad(field, v, err) end
  return bytes
end

local function is_pow2(n)
  while n > 1 and n % 2 == 0 do n = n / 2 end
  return n == 1
end

local function check_block_size(v)
  local bs = check_size("block_size", v)
  if bs < 512 or bs > 4096 or not is_pow2(bs) then
    bad("block_size", v, "must be a power of two from 512 to 4096")
  end
  return bs
end

local function check_max_io(v, max)
  local n = check_size("max_io", v)
  if n < 4096 or n > max or n % 4096 ~= 0 then
    bad("max_io", v, format("must be a multiple of 4096 from 4 KiB to %s",
      params.format_size(max)))
  end
  return n
end

-- size may come from a backend object (e.g. a file's length); its
-- messages then name 'backend.size' so the user knows where to look.
local function backend_name(b)
  if type(b) == "table" then return b.name end
  return b
end

local function check_dev_size(t, bs)
  local v, field = t.size, "size"
  if v == nil and type(t.backend) == "table" and t.backend.size ~= nil then
    v, field = t.backend.size, "backend.size"
  end
  -- 0 asks the file backend to use the file's own length
  if v == nil and backend_name(t.backend) == "file" then return 0 end
  if v == nil then
    fail("missing parameter 'size': required unless the backend provides"
      .. " one (bytes or a string like \"256MiB\")")
  end
  local n = check_size(field, v)
  if n == 0 or n % bs ~= 0 then
    bad(field, v, format("must be a positive multiple of block_size (%s)",
      show(bs)))
  end
  return n
end

local function check_backend(v)
  if type(v) == "table" then return v end  -- a backend object: pass through
  if type(v) ~= "string" or not v:match("^[%a_][%w_%-]*$") then
    bad("backend", v, "must be a backend name (letters, digits, '_' or '-',"
      .. " not starting with a digit or '-') or a backend object")
  end
  return v
end

local function check_string(field, v, allow_empty)
  if v == nil then return nil end
  if type(v) ~= "string" or (v == "" and not allow_empty) then
    bad(field, v, allow_empty and "must be a string"
      or "must be a non-empty string")
  end
  return v
end

local function check_limits(limits)
  if limits == nil then return DEFAULT_LIMITS end
  if type(limits) ~= "table" then
    fail("limits must be a table, got " .. show(limits))
  end
  local out = copy(DEFAULT_LIMITS)
  for k, v in pairs(limits) do
    if DEFAULT_LIMITS[k] == nil then
      fail(format("unknown limit %s (known: max_depth, max_io_max, max_queues)",
        show(k)))
    end
    if not is_int(v) or v < 1 then
      fail(format("bad limit '%s' = %s: must be a positive integer", k, show(v)))
    end
    out[k] = v
  end
  return out
end

-- Does the work; raises Failure.  Field order matters only where one check
-- uses another's result (size is a multiple of block_size).
local function normalise(t, limits)
  if type(t) ~= "table" then
    fail("device parameters must be a table, got " .. show(t))
  end
  limits = check_limits(limits)
  check_unknown(t)
  local function get(k)
    local v = t[k]
    if v == nil then return DEFAULTS[k] end
    return v
  end
  local out = {}
  out.block_size = check_block_size(get("block_size"))
  out.size = check_dev_size(t, out.block_size)
  out.queues = check_int("queues", get("queues"), 1, limits.max_queues)
  out.depth = check_int("depth", get("depth"), 1, limits.max_depth)
  out.max_io = check_max_io(get("max_io"), limits.max_io_max)
  out.read_only = check_bool("read_only", get("read_only"))
  out.discard = check_bool("discard", get("discard"))
  out.pin = check_bool("pin", get("pin"))
  out.direct = check_bool("direct", get("direct"))
  out.id = check_int("id", get("id"), -1, MAX_ID)
  out.backend = check_backend(get("backend"))
  out.path = check_string("path", t.path, false)
  out.name = check_string("name", t.name, true)
  if backend_name(out.backend) == "file" and not out.path
      and not (type(out.backend) == "table" and out.backend.path) then
    fail("missing parameter 'path': the file backend needs the file to serve")
  end
  return out
end

-- validate(t [, limits]) -> new normalised table.  Bad parameters are a
-- mistake in the caller's script, so this raises error(msg, 2) rather than
-- returning nil, msg: nothing sensible can run with a half-valid device.
function params.validate(t, limits)
  local ok, res = pcall(normalise, t, limits)
  if ok then return res end
  if getmetatable(res) == Failure then error(res.msg, 2) end
  error(res, 0)  -- a bug in this module: keep its original message
end

return params
