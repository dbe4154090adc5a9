-- ublk.json: the little JSON the CLI needs: encoding its own tables (state
-- files, `list --json`) and decoding what it wrote.  Objects are tables
-- with string keys, arrays tables with 1..n; keys are written sorted, so
-- the output is stable.  Pure Lua.
local json = {}

local format, concat, sort = string.format, table.concat, table.sort

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESC[c] or format("\\u%04x", c:byte())
  end) .. '"'
end

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t and (n > 0 or getmetatable(t) == json.array)
end

json.array = {} -- setmetatable({}, json.array): an empty array, not {}

-- json.number(v) -> the shortest text that reads back as the same double
-- (a finite v): 172.032, not 172.03200000000001 (%.17g always
-- round-trips, often noisily); whole numbers without exponent
function json.number(v)
  if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return format("%.0f", v) end
  local s
  for digits = 15, 17 do
    s = format("%." .. digits .. "g", v)
    if tonumber(s) == v then break end
  end
  return s
end

local function encode(v, out)
  local tv = type(v)
  if tv == "string" then
    out[#out + 1] = encode_string(v)
  elseif tv == "number" then
    -- JSON has no NaN or infinity; writing "nan" would make a file nobody
    -- can read back: a mistake of the caller's
    if v ~= v or v == math.huge or v == -math.huge then
      error("json.encode: cannot encode " .. tostring(v) .. " (JSON numbers are finite)", 0)
    end
    out[#out + 1] = json.number(v)
  elseif tv == "boolean" then
    out[#out + 1] = tostring(v)
  elseif v == nil then
    out[#out + 1] = "null"
  elseif tv == "table" then
    if is_array(v) then
      out[#out + 1] = "["
      for i, x in ipairs(v) do
        if i > 1 then out[#out + 1] = ", " end
        encode(x, out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = ", " end
        out[#out + 1] = encode_string(k) .. ": "
        local x = v[k]
        if x == nil then x = v[tonumber(k)] end
        encode(x, out)
      end
      out[#out + 1] = "}"
    end
  else
    error("json.encode: cannot encode a " .. tv, 2)
  end
end

-- json.encode(v) -> string
function json.encode(v)
  local out = {}
  encode(v, out)
  return concat(out)
end

-- json.decode(s) -> value | nil, "why"
function json.decode(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    local buf, i = {}, pos + 1
    while true do
      local c = s:sub(i, i)
      if c == "" then error("unterminated string", 0) end
      if c == '"' then pos = i + 1; return concat(buf) end
      if c == "\\" then
        local e = s:sub(i + 1, i + 1)
        if e == "u" then
          buf[#buf + 1] = string.char(tonumber(s:sub(i + 2, i + 5), 16) % 256)
          i = i + 6
        else
          buf[#buf + 1] = ({ n = "\n", r = "\r", t = "\t", b = "\b", f = "\f" })[e] or e
          i = i + 2
        end
      else
        buf[#buf + 1] = c
        i = i + 1
      end
    end
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return t end
      repeat
        ws()
        if s:sub(pos, pos) ~= '"' then error("expected a key at " .. pos, 0) end
        local k = str()
        ws()
        if s:sub(pos, pos) ~= ":" then error("expected ':' at " .. pos, 0) end
        pos = pos + 1
        t[k] = value()
        ws()
        c = s:sub(pos, pos)
        pos = pos + 1
      until c ~= ","
      if c ~= "}" then error("expected '}' at " .. (pos - 1), 0) end
      return t
    elseif c == "[" then
      local t = setmetatable({}, json.array)
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return t end
      repeat
        t[#t + 1] = value()
        ws()
        c = s:sub(pos, pos)
        pos = pos + 1
      until c ~= ","
      if c ~= "]" then error("expected ']' at " .. (pos - 1), 0) end
      return t
    elseif c == '"' then
      return str()
    end
    for word, v in pairs({ ["true"] = true, ["false"] = false }) do
      if s:sub(pos, pos + #word - 1) == word then pos = pos + #word; return v end
    end
    if s:sub(pos, pos + 3) == "null" then pos = pos + 4; return nil end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num or num == "" then error("unexpected " .. (c == "" and "end" or c) .. " at " .. pos, 0) end
    local n = tonumber(num)
    if not n or n ~= n or n == math.huge or n == -math.huge then
      error("bad number " .. num .. " at " .. pos, 0)
    end
    pos = pos + #num
    return n
  end
  local ok, v = pcall(value)
  if not ok then return nil, v end
  ws()
  if pos <= #s then return nil, "trailing text at " .. pos end
  return v
end

return json
