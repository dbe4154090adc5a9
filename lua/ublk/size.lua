-- ublk.size: byte counts from numbers and strings ("256MiB", "1.5G"), and
-- back to exact text.  Pure Lua; exact to the byte: fractions are done on
-- decimal digit strings, never with floating point.
local size = {}

local floor, huge = math.floor, math.huge
local format, concat = string.format, table.concat

local KiB, MiB, GiB, TiB = 1024, 1024 ^ 2, 1024 ^ 3, 1024 ^ 4

-- Largest byte count a double holds exactly (2^53 = 8 PiB).
local MAX_BYTES = 2 ^ 53
local MAX_BYTES_DIGITS = "9007199254740992"

-- Unit suffixes, matched case-insensitively: B, K/M/G/T and KiB/MiB/GiB/TiB,
-- all powers of 1024.  KB/MB/GB/TB are refused (DECIMAL_UNITS): dd and
-- truncate read "1GB" as 10^9 bytes, and ublk-lua 0.2.0 read it as 2^30;
-- giving it either meaning now would surprise someone, and reading
-- it as 10^9 would silently shrink a device whose script says "1GB" the
-- next time it is recovered.  Values are the power-of-two exponent,
-- because exact fraction handling needs it.
local UNIT_SHIFT = {
  [""] = 0, b = 0,
  k = 10, kib = 10,
  m = 20, mib = 20,
  g = 30, gib = 30,
  t = 40, tib = 40,
}
local DECIMAL_UNITS = { kb = "K", mb = "M", gb = "G", tb = "T" }

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
  local binary = DECIMAL_UNITS[unit:lower()]
  if binary then
    return nil, ("unit '%s' is ambiguous (dd reads it as a power of 1000, ublk-lua once "
      .. "read it as a power of 1024): write %s%siB (or %s%s) for powers of 1024, or the "
      .. "number of bytes"):format(unit, s:match("^%s*([%d.]+)"), binary, s:match("^%s*([%d.]+)"),
      binary)
  end
  if not shift then
    return nil, "unknown unit '" .. unit .. "' (use B, K, M, G, T, or KiB, MiB, GiB, TiB)"
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

-- parse(v) -> bytes | nil, message.  Accepts a non-negative integer
-- number of bytes or a size string.  Bad input is an expected failure
-- (it comes from users, config files, the command line), hence nil, msg.
function size.parse(v)
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

-- format(bytes) -> "256 MiB": the largest binary unit that divides
-- evenly, else plain bytes, so the text is exact (never "1.5 GiB").
function size.format(bytes)
  if type(bytes) ~= "number" or bytes ~= floor(bytes) or bytes < 0 or bytes == huge then
    return tostring(bytes)
  end
  if bytes > 0 then
    for _, u in ipairs(FORMAT_UNITS) do
      if bytes % u[1] == 0 then
        return format("%.0f %s", bytes / u[1], u[2])
      end
    end
  end
  return format("%.0f B", bytes)
end

return size
