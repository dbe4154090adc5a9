-- ublk.check: what every parameter check is made of: the value as a
-- message shows it, the one shape of a refusal, the checks of a whole
-- number, a flag, a size and a string, and the nearest known word to a
-- mistyped one.  ublk.params and ublk.block_limits check with these;
-- their failures are raised as check.Failure, which params.validate turns
-- into an error blaming its caller.
local size = require "ublk.size"

local floor, huge, format = math.floor, math.huge, string.format

local check = {}

function check.is_int(v)
  -- floor(inf) == inf, so rule infinities out explicitly; NaN fails ==.
  return type(v) == "number" and v == floor(v) and v ~= huge and v ~= -huge
end

-- Renders a value for an error message: strings quoted so "" and " " are
-- visible, whole numbers without exponent so 1e15 reads as 1000000000000000.
function check.show(v)
  if type(v) == "string" then return format("%q", v) end
  if check.is_int(v) and v > -2 ^ 63 and v < 2 ^ 63 then return format("%.0f", v) end
  if type(v) == "table" or type(v) == "function" or type(v) == "userdata"
    or type(v) == "thread" then
    return "<" .. type(v) .. ">"
  end
  return tostring(v)
end

function check.is_pow2(n)
  while n > 1 and n % 2 == 0 do n = n / 2 end
  return n == 1
end

-- A refusal: raised as a tagged table (params.validate says why).
check.Failure = {}

function check.fail(msg)
  error(setmetatable({ msg = "ublk: " .. msg }, check.Failure), 0)
end

function check.bad(field, value, rule)
  check.fail(format("bad parameter '%s' = %s: %s", field, check.show(value), rule))
end

function check.int(field, v, lo, hi)
  if not check.is_int(v) or v < lo or v > hi then
    check.bad(field, v, format("must be an integer from %s to %s", check.show(lo),
      check.show(hi)))
  end
  return v
end

function check.bool(field, v)
  if type(v) ~= "boolean" then check.bad(field, v, "must be true or false") end
  return v
end

function check.size(field, v)
  local bytes, err = size.parse(v)
  if not bytes then check.bad(field, v, err) end
  return bytes
end

function check.string(field, v, allow_empty)
  if v == nil then return nil end
  if type(v) ~= "string" or (v == "" and not allow_empty) then
    check.bad(field, v, allow_empty and "must be a string" or "must be a non-empty string")
  end
  return v
end

-- Edit distance (insertions, deletions, substitutions, swaps of two
-- neighbours); names are short, so a full table is cheap.
function check.distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 0, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      d[i][j] = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        d[i][j] = math.min(d[i][j], d[i - 2][j - 2] + 1)
      end
    end
  end
  return d[#a][#b]
end

-- The word of `words` (a sorted list, so ties pick a stable one) that
-- `word` is a typo of: at most 2 edits away, and fewer edits than it has
-- letters ("x" is 2 edits from "id" but no typo of it).  nil if none.
function check.suggest(word, words)
  local best, best_d = nil, 3
  for _, w in ipairs(words) do
    local d = check.distance(word:lower(), w)
    if d < best_d and d < #word then best, best_d = w, d end
  end
  return best
end

return check
