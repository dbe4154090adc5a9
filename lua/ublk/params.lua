-- ublk.params: the single place where device parameters are validated and
-- normalised, before any device is created.  Everything downstream (the C
-- runtime, the backends, the CLI) may then trust the normalised table and
-- never re-check types or ranges.
--
-- Pure Lua, Lua 5.1 / LuaJIT compatible.  Sizes are parsed by ublk.size,
-- exact up to 2^53 bytes (LuaJIT numbers are doubles).

local params = {}

local floor, huge = math.floor, math.huge
local format, concat, sort = string.format, table.concat, table.sort

local KiB, MiB = 1024, 1024 ^ 2

---------------------------------------------------------------------------
-- Values in messages
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

local size = require "ublk.size"
-- parse_size(v) -> bytes | nil, message; format_size(bytes) -> "256 MiB"
params.parse_size, params.format_size = size.parse, size.format

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
  pin = false,       -- docs/tuning.md: unpinned won in every row but 2 jobs
  latency = true,     -- latency histograms (ublk-lua stats)
  poll_us = 0,        -- no spinning before a queue thread sleeps
  batch = false,      -- per-request FETCH/COMMIT (docs/tuning.md: batch I/O)
  id = -1,            -- -1: the kernel picks the device number
  backend = "memory",
}

local DEFAULT_LIMITS = {
  max_queues = 64,    -- the runtime passes the real limit (e.g. nr CPUs)
  max_depth = 4096,   -- UBLK_MAX_QUEUE_DEPTH
  max_io_max = 32 * MiB,
}

-- poll_us at most 10 ms: past that a sleeping thread wakes sooner than it spins
local MAX_POLL_US = 10000
local MAX_ID = 1048575  -- 2^20 - 1: the minor-number space ublk uses

local FIELDS = {
  "backend", "batch", "block_size", "connect_timeout", "connections", "copy", "create", "depth",
  "direct", "discard", "id", "latency", "max_io", "name", "path", "pin", "poll_us", "queues",
  "read_only", "reconnect", "recovery", "size", "timeout", "uri",
}
-- the rbd backend's device fields (image, conf, client, ...)
local rbd = require "ublk.rbd"
for f in pairs(rbd.device_fields) do FIELDS[#FIELDS + 1] = f end
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
  -- 0 asks the file backend for the file's own length, nbd for the export's
  local name = backend_name(t.backend)
  if v == nil and (name == "file" or name == "nbd" or name == "rbd") then return 0 end
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

local function check_backend(v, known)
  if type(v) == "table" then return v end  -- a backend object: pass through
  if type(v) ~= "string" or not v:match("^[%a_][%w_%-]*$") then
    bad("backend", v, "must be a backend name (letters, digits, '_' or '-',"
      .. " not starting with a digit or '-') or a backend object")
  end
  if known then
    for _, name in ipairs(known) do
      if name == v then return v end
    end
    fail(format("unknown backend '%s' (%s, or ublk.backend{...})", v,
      concat(known, ", ")))
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

-- What the kernel does with the device when its server dies: keep it for
-- a new server (`ublk-lua recover`) and re-issue the I/O the old one held,
-- or keep it and fail that I/O ("queue" re-queues only what had not
-- reached the server), or fail all I/O until recovered ("fail", 6.13+);
-- false: remove it.  Absent: "reissue" where the kernel has it.
local RECOVERY = { reissue = true, queue = true, fail = true }

local function check_recovery(v)
  if v == nil then return nil end
  if v == true then return "reissue" end
  if v == false or RECOVERY[v] then return v end
  bad("recovery", v, 'must be "reissue", "queue", "fail" or false')
end

local function first_non_nil(a, b) if a == nil then return b end return a end

-- How request data moves (docs/tuning.md): each C backend has its modes.
local COPY_MODES = {
  memory = { inline = true, ring = true, buffer = true, auto_reg = true,
    list = '"inline", "ring", "buffer" or "auto_reg"' },
  file = { buffer = true, auto_reg = true, register = true,
    list = '"buffer", "auto_reg" or "register"' },
}
local function check_copy(v, name)
  if v == nil then return nil end
  local modes = COPY_MODES[type(name) == "string" and name or ""]
  if not modes then
    bad("copy", v, "applies to the memory and file backends only (backend " .. show(name) .. ")")
  end
  if type(v) ~= "string" or not modes[v] or v == "list" then
    bad("copy", v, "for the " .. name .. " backend must be " .. modes.list)
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
    if k == "backends" and type(v) == "table" then
      out.backends = v -- the backend names the runtime has
    elseif DEFAULT_LIMITS[k] == nil then
      fail(format("unknown limit %s (known: backends, max_depth, max_io_max,"
        .. " max_queues)", show(k)))
    elseif not is_int(v) or v < 1 then
      fail(format("bad limit '%s' = %s: must be a positive integer", k, show(v)))
    end
    out[k] = v
  end
  return out
end

-- params.check_nbd(uri, connections, reconnect, timeout, connect_timeout)
-- -> true | nil, message: what the nbd backend (ublk.nbd{} or backend =
-- "nbd") accepts.  The timeouts are seconds (fractions too), at least a
-- millisecond: the runtime counts in milliseconds.
local NBD_SCHEMES = { "nbd://", "nbds://", "nbd+unix://", "nbds+unix://", "nbd+vsock://" }

function params.check_nbd(uri, connections, reconnect, timeout, connect_timeout)
  if type(uri) ~= "string" then
    return nil, format("uri = %s: must be a string such as \"nbd://host:port/export\""
      .. " or \"nbd+unix:///export?socket=PATH\"", show(uri))
  end
  local known = false
  for _, s in ipairs(NBD_SCHEMES) do
    if uri:sub(1, #s) == s then known = true end
  end
  if not known then
    return nil, format("uri = %s: must start with %s", show(uri), concat(NBD_SCHEMES, ", "))
  end
  if connections ~= nil and (not is_int(connections) or connections < 1
      or connections > 4096) then
    return nil, format("connections = %s: must be an integer from 1 to 4096",
      show(connections))
  end
  if reconnect ~= nil and (not is_int(reconnect) or reconnect < 0 or reconnect > 1000) then
    return nil, format("reconnect = %s: must be a number of tries from 0 to 1000",
      show(reconnect))
  end
  for _, f in ipairs({ { "timeout", timeout }, { "connect_timeout", connect_timeout } }) do
    local v = f[2]
    -- not (v >= ...) also refuses nan
    if v ~= nil and (type(v) ~= "number" or not (v >= 0.001) or not (v <= 86400)) then
      return nil, format("%s = %s: must be a number of seconds from 0.001 to 86400",
        f[1], show(v))
    end
  end
  return true
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
  out.batch = check_bool("batch", get("batch"))
  out.poll_us = check_int("poll_us", get("poll_us"), 0, MAX_POLL_US)
  out.latency = check_bool("latency", get("latency"))
  out.recovery = check_recovery(t.recovery)
  -- file backend: absent means its own default (O_DIRECT for block devices)
  if t.direct ~= nil then out.direct = check_bool("direct", t.direct) end
  if t.create ~= nil then out.create = check_bool("create", t.create) end
  out.id = check_int("id", get("id"), -1, MAX_ID)
  out.backend = check_backend(get("backend"), limits.backends)
  out.copy = check_copy(first_non_nil(t.copy, type(out.backend) == "table"
    and getmetatable(out.backend) ~= nil and out.backend.copy or nil), backend_name(out.backend))
  out.path = check_string("path", t.path, false)
  out.name = check_string("name", t.name, true)
  if t.uri ~= nil or t.connections ~= nil or t.reconnect ~= nil or t.timeout ~= nil
      or t.connect_timeout ~= nil or backend_name(out.backend) == "nbd" then
    local b = type(out.backend) == "table" and out.backend or {}
    local uri = t.uri or b.uri
    if uri == nil and backend_name(out.backend) == "nbd" then
      fail("missing parameter 'uri': the nbd backend needs \"nbd://host:port/export\""
        .. " or \"nbd+unix:///export?socket=PATH\"")
    end
    local ok, err = params.check_nbd(uri, t.connections, t.reconnect, t.timeout,
      t.connect_timeout)
    if not ok then fail(err) end
    out.uri, out.connections, out.reconnect = t.uri, t.connections, t.reconnect
    out.timeout, out.connect_timeout = t.timeout, t.connect_timeout
  end
  local rbd_fields = backend_name(out.backend) == "rbd"
  for f in pairs(rbd.device_fields) do rbd_fields = rbd_fields or t[f] ~= nil end
  if rbd_fields then
    -- checked as ublk.rbd{} options: the object's, then the device's own
    local b = type(out.backend) == "table" and out.backend or {}
    local o = { read_only = out.read_only or b.read_only }
    for f, opt in pairs(rbd.device_fields) do
      if b[opt] ~= nil then o[opt] = b[opt] else o[opt] = t[f] end
      out[f] = t[f]
    end
    local ok, err = rbd.check(o)
    if not ok then fail(err) end
  end
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
