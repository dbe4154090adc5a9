-- ublk.params: the single place where device parameters are validated and
-- normalised, before any device is created.  Everything downstream (the C
-- runtime, the backends, the CLI) may then trust the normalised table and
-- never re-check types or ranges.
--
-- Lua 5.1 / LuaJIT compatible.  Sizes are parsed by ublk.size, exact up
-- to 2^53 bytes (LuaJIT numbers are doubles).  A C backend's own options
-- are checked against its declaration (ublk.options): none is named here.

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
local options = require "ublk.options"
-- parse_size(v) -> bytes | nil, message; format_size(bytes) -> "256 MiB"
params.parse_size, params.format_size = size.parse, size.format

---------------------------------------------------------------------------
-- Field table
---------------------------------------------------------------------------

-- Defaults in normalised form: what validate() puts in its output.
-- size and name have no default (size may come from the backend); the
-- backend is the registry's first (runtime/backends/backend.c).
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
  backend = options.backends()[1].name,
}

local DEFAULT_LIMITS = {
  max_queues = 64,    -- the runtime passes the real limit (e.g. nr CPUs)
  max_depth = 4096,   -- UBLK_MAX_QUEUE_DEPTH
  max_io_max = 32 * MiB,
}

-- poll_us at most 10 ms: past that a sleeping thread wakes sooner than it spins
local MAX_POLL_US = 10000
local MAX_ID = 1048575  -- 2^20 - 1: the minor-number space ublk uses

-- The device's own fields; the C backends' options (ublk.options) join
-- them in fields_of().
local DEVICE_FIELDS = {
  "backend", "batch", "block_size", "depth", "discard", "id", "latency", "max_io", "name",
  "pin", "poll_us", "queues", "read_only", "recovery", "size",
  -- the block layer's limits and partition scan (check_limits_of)
  "dma_align", "max_segment_size", "max_segments", "no_auto_part_scan", "segment_boundary",
}

-- fields_of([decls]) -> every field, sorted, and a set of them; kept
-- for each list of declarations (ublk.options says why)
local fields_cache = setmetatable({}, { __mode = "k" })
local function fields_of(decls)
  local key = options.backends(decls)
  local c = fields_cache[key]
  if c then return c[1], c[2] end
  local list, set = {}, {}
  for _, f in ipairs(DEVICE_FIELDS) do list[#list + 1] = f end
  for _, f in ipairs(options.names(decls)) do list[#list + 1] = f end
  sort(list)
  for _, f in ipairs(list) do set[f] = true end
  fields_cache[key] = { list, set }
  return list, set
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- Exported as copies: validate() reads the private tables, so a caller
-- scribbling on params.defaults cannot change what later devices get.
params.fields = copy(fields_of())
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

local function suggest(key, fields)
  local best, best_d = nil, 3  -- only suggest within distance 2
  for _, f in ipairs(fields) do  -- sorted, so ties pick a stable name
    local d = distance(key:lower(), f)
    -- d < #key: "x" is 2 edits from "id" but that is no typo of it.
    if d < best_d and d < #key then best, best_d = f, d end
  end
  return best
end

local function check_unknown(t, decls)
  local fields, known = fields_of(decls)
  local unknown = {}
  for k in pairs(t) do
    if not known[k] then unknown[#unknown + 1] = k end
  end
  if #unknown == 0 then return end
  -- pairs() order is arbitrary; report the same key every run.
  sort(unknown, function(a, b) return tostring(a) < tostring(b) end)
  local k = unknown[1]
  if type(k) ~= "string" then
    fail(format("unknown parameter [%s] (parameters are named fields: %s)",
      show(k), concat(fields, ", ")))
  end
  local hint = suggest(k, fields)
  if hint then
    fail(format("unknown parameter '%s' (did you mean '%s'?)", k, hint))
  end
  fail(format("unknown parameter '%s' (known: %s)", k, concat(fields, ", ")))
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

local function check_dev_size(t, bs, decls)
  local v, field = t.size, "size"
  if v == nil and type(t.backend) == "table" and t.backend.size ~= nil then
    v, field = t.backend.size, "backend.size"
  end
  -- 0 asks a backend that sizes itself for its own (a file's length)
  local b = options.find(backend_name(t.backend) or DEFAULTS.backend, decls)
  if v == nil and b and b.sizes_itself then return 0 end
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

local function check_backend(v, decls)
  if type(v) == "table" then return v end  -- a backend object: pass through
  if type(v) ~= "string" or not v:match("^[%a_][%w_%-]*$") then
    bad("backend", v, "must be a backend name (letters, digits, '_' or '-',"
      .. " not starting with a digit or '-') or a backend object")
  end
  if options.find(v, decls) then return v end
  local names = {}
  for _, b in ipairs((options.backends(decls))) do names[#names + 1] = b.name end
  fail(format("unknown backend '%s' (%s, or ublk.backend{...})", v, concat(names, ", ")))
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

-- The options of backend `name` (nil: a Lua backend, which has none)
-- that t holds, checked against its declaration (ublk.options) into out;
-- another backend's option is refused naming whose it is.  A required one
-- may come from the backend object `obj` instead.
local function check_options(t, name, obj, decls, out)
  local b = name and options.find(name, decls)
  for _, f in ipairs(options.names(decls)) do
    local v = t[f]
    if v ~= nil then
      local o = b and b.by[f]
      if not o then
        bad(f, v, format("applies to %s only (backend %s)", options.owners(f, decls),
          show(name)))
      end
      local ok, rule = options.check(o, v)
      if ok == nil then bad(f, v, format("for the %s backend %s", name, rule)) end
      out[f] = ok
    end
  end
  for _, o in ipairs(b and b.options or {}) do
    if o.required and out[o.name] == nil and not (obj and obj[o.name] ~= nil) then
      fail(format("missing parameter '%s': the %s backend needs it (%s)", o.name, name,
        o.help))
    end
  end
end

local function check_limits(limits)
  if limits == nil then return DEFAULT_LIMITS end
  if type(limits) ~= "table" then
    fail("limits must be a table, got " .. show(limits))
  end
  local out = copy(DEFAULT_LIMITS)
  for k, v in pairs(limits) do
    if k == "backends" and type(v) == "table" then
      out.backends = v -- the runtime's backends as core.backends() gives them
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

-- The block layer's limits a device may set (UBLK_PARAM_TYPE_DMA_ALIGN and
-- _SEGMENT, Linux 6.15+), each absent unless given, with the kernel's own
-- rules (ublk_validate_params): a DMA alignment below a page, a segment
-- boundary and size of at least 4 KiB (UBLK_MIN_SEGMENT_SIZE).  A segment
-- never crosses the boundary, so none can be larger than it.
local function check_limits_of(t, out)
  if t.dma_align ~= nil then
    local n = check_size("dma_align", t.dma_align)
    if n > 4096 or not is_pow2(n) then
      bad("dma_align", t.dma_align, "must be a power of two from 1 to 4096 bytes (a page)")
    end
    out.dma_align = n
  end
  if t.max_segments ~= nil then
    out.max_segments = check_int("max_segments", t.max_segments, 1, 65535)
  end
  if t.segment_boundary ~= nil then
    local n = check_size("segment_boundary", t.segment_boundary)
    if n < 4096 or n > 2 ^ 52 or not is_pow2(n) then
      bad("segment_boundary", t.segment_boundary,
        "must be a power of two from 4 KiB to 4 PiB (no segment crosses it)")
    end
    out.segment_boundary = n
  end
  if t.max_segment_size ~= nil then
    local n = check_size("max_segment_size", t.max_segment_size)
    local hi = math.min(out.segment_boundary or 2 ^ 32, 2 ^ 32) - 1
    if n < 4096 or n > hi then
      bad("max_segment_size", t.max_segment_size, format("must be from 4096 to %d bytes%s",
        hi, out.segment_boundary and " (segment_boundary - 1: no segment crosses it)" or ""))
    end
    out.max_segment_size = n
  end
  if t.no_auto_part_scan ~= nil then
    out.no_auto_part_scan = check_bool("no_auto_part_scan", t.no_auto_part_scan)
  end
end

-- params.limits_text(info) -> ", dma_align 512, ..." for what a device
-- was given of the limits above (dev:info(), core.dev_info), or ""
function params.limits_text(info)
  local s = {}
  if info.flags and info.flags.no_auto_part_scan then s[#s + 1] = "no auto partition scan" end
  if info.dma_align then s[#s + 1] = "dma_align " .. info.dma_align end
  if info.max_segments then
    s[#s + 1] = ("segments %d x %s, boundary %s"):format(info.max_segments,
      params.format_size(info.max_segment_size), params.format_size(info.segment_boundary))
  end
  return #s > 0 and ", " .. concat(s, ", ") or ""
end

-- Does the work; raises Failure.  Field order matters only where one check
-- uses another's result (size is a multiple of block_size).
local function normalise(t, limits)
  if type(t) ~= "table" then
    fail("device parameters must be a table, got " .. show(t))
  end
  limits = check_limits(limits)
  local decls = limits.backends
  check_unknown(t, decls)
  local function get(k)
    local v = t[k]
    if v == nil then return DEFAULTS[k] end
    return v
  end
  local out = {}
  out.block_size = check_block_size(get("block_size"))
  out.size = check_dev_size(t, out.block_size, decls)
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
  check_limits_of(t, out)
  out.id = check_int("id", get("id"), -1, MAX_ID)
  out.backend = check_backend(get("backend"), decls)
  out.name = check_string("name", t.name, true)
  -- a backend option left out is the backend's own default (file's direct)
  local obj = type(out.backend) == "table" and out.backend or nil
  local name = backend_name(out.backend)
  check_options(t, name, obj, decls, out)
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
