-- ublk.params: the single place where device parameters are validated and
-- normalised, before any device is created.  Everything downstream (the C
-- runtime, the backends, the CLI) may then trust the normalised table and
-- never re-check types or ranges.
--
-- Lua 5.1 / LuaJIT compatible.  Sizes are parsed by ublk.size, exact up
-- to 2^53 bytes (LuaJIT numbers are doubles).  A C backend's own options
-- are checked against its declaration (ublk.options): none is named here.

local params = {}

local format, concat, sort = string.format, table.concat, table.sort

local KiB, MiB = 1024, 1024 ^ 2

local size = require "ublk.size"
local options = require "ublk.options"
local check = require "ublk.check"
local block_limits = require "ublk.block_limits"
local is_int, show, fail, bad = check.is_int, check.show, check.fail, check.bad
local check_int, check_bool, check_size, check_string =
  check.int, check.bool, check.size, check.string
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
  pin = "auto",      -- docs/tuning.md: pinned at QD1, unpinned with depth
  latency = true,     -- latency histograms (ublk-lua stats)
  poll_us = 0,        -- no spinning before a queue thread sleeps
  batch = false,      -- per-request FETCH/COMMIT (docs/tuning.md: batch I/O)
  need_get_data = false, -- a write's data comes with it, not by a second command
  threads = 1,        -- threads a queue (UBLK_F_PER_IO_DAEMON, 6.16+)
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
  "backend", "batch", "block_size", "depth", "discard", "id", "io_desc_size", "latency",
  "max_io", "name", "need_get_data", "pin", "poll_us", "queues", "read_only", "recovery",
  "shmem_zc", "size", "threads",
}
-- the block layer's limits and partition scan
for _, f in ipairs(block_limits.fields) do DEVICE_FIELDS[#DEVICE_FIELDS + 1] = f end
local IS_DEVICE_FIELD = {}
for _, f in ipairs(DEVICE_FIELDS) do IS_DEVICE_FIELD[f] = true end

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

-- bdecl: the device's backend's declaration, whose options are fields
-- too (a plugin's, which no list holds)
local function check_unknown(t, decls, bdecl)
  local fields, known = fields_of(decls)
  local unknown = {}
  for k in pairs(t) do
    if not known[k] and not (bdecl and bdecl.by and bdecl.by[k]) then
      unknown[#unknown + 1] = k
    end
  end
  if #unknown == 0 then return end
  -- pairs() order is arbitrary; report the same key every run.
  sort(unknown, function(a, b) return tostring(a) < tostring(b) end)
  local k = unknown[1]
  if type(k) ~= "string" then
    fail(format("unknown parameter [%s] (parameters are named fields: %s)",
      show(k), concat(fields, ", ")))
  end
  local hint = check.suggest(k, fields)
  if hint then
    fail(format("unknown parameter '%s' (did you mean '%s'?)", k, hint))
  end
  fail(format("unknown parameter '%s' (known: %s)", k, concat(fields, ", ")))
end

local function check_block_size(v)
  local bs = check_size("block_size", v)
  if bs < 512 or bs > 4096 or not check.is_pow2(bs) then
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

local function check_dev_size(t, bs, decls, bdecl)
  local v, field = t.size, "size"
  if v == nil and type(t.backend) == "table" and t.backend.size ~= nil then
    v, field = t.backend.size, "backend.size"
  end
  -- 0 asks a backend that sizes itself for its own (a file's length)
  local b = bdecl
  if v == nil and b and b.sizes_itself then return 0 end
  -- a Lua backend without a size: its delegates' that size themselves (ublk.backend)
  if v == nil and type(t.backend) == "table" and t.backend.sized_by_delegates then return 0 end
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

-- shmem_zc (UBLK_F_SHMEM_ZC, 7.1+): the files, one path or a list of up
-- to 16 (runtime/device/device_shmem.c says what each must be), or nil.
-- Never with recovery: a recovering server would meet the dead one's
-- registrations under indexes it cannot know; nor with batch I/O.
local function check_shmem_zc(t)
  local v = t.shmem_zc
  if v == nil then return nil end
  local list = type(v) == "string" and { v } or v
  if type(list) ~= "table" or #list < 1 or #list > 16 then
    bad("shmem_zc", v, "must be a file's path or a list of 1 to 16 of them")
  end
  for _, p in ipairs(list) do
    if type(p) ~= "string" or p:sub(1, 1) ~= "/" then
      bad("shmem_zc", p, "must be an absolute path (a file in /dev/shm or hugetlbfs)")
    end
  end
  if t.recovery ~= nil and t.recovery ~= false then
    bad("shmem_zc", v, "cannot go with recovery (a recovering server would not know the "
      .. "buffers the dead one registered): set recovery = false")
  end
  if t.batch then bad("shmem_zc", v, "cannot go with batch = true") end
  return list
end

-- The options of backend `name` (nil: a Lua backend, which has none)
-- that t holds, checked against its declaration (ublk.options) into out;
-- another backend's option is refused naming whose it is.  A required one
-- may come from the backend object `obj` instead.
local function check_options(t, name, obj, decls, out, b)
  local function check(f)
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
  local names = options.names(decls)
  for _, f in ipairs(names) do check(f) end
  -- a plugin's options are in no list of declarations
  if b and b.plugin then
    for _, o in ipairs(b.options) do
      if out[o.name] == nil then check(o.name) end
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

-- params.limits_text(info) -> ", dma_align 512, ..." (ublk.block_limits)
params.limits_text = block_limits.text

-- Does the work; raises Failure.  Field order matters only where one check
-- uses another's result (size is a multiple of block_size).
local function normalise(t, limits)
  if type(t) ~= "table" then
    fail("device parameters must be a table, got " .. show(t))
  end
  limits = check_limits(limits)
  local decls = limits.backends
  -- the backend's declaration: a plugin's (t.path) says what else t holds
  local bname = backend_name(t.backend)
  if bname == nil then bname = DEFAULTS.backend end
  local bdecl, perr
  if type(bname) == "string" then
    local obj = type(t.backend) == "table" and t.backend or nil
    bdecl, perr = options.find(bname, decls, obj or t)
    if perr then
      for _, o in ipairs(options.find(bname, decls).options) do
        if o.plugin then bad(o.name, (obj or t)[o.name], perr) end
      end
    end
    -- A built-in backend's option names are checked by options_spec; a
    -- plugin's arrive only now, and one named like a device field would
    -- be read as both.
    if bdecl and bdecl.plugin then
      for i, o in ipairs(bdecl.options) do
        if i > 1 and IS_DEVICE_FIELD[o.name] then
          local path = bdecl.options[1].name
          bad(path, (obj or t)[path], format("the plugin declares an option '%s', which is"
            .. " the name of a device field: the plugin must rename it", o.name))
        end
      end
    end
  end
  check_unknown(t, decls, bdecl)
  local function get(k)
    local v = t[k]
    if v == nil then return DEFAULTS[k] end
    return v
  end
  local out = {}
  out.block_size = check_block_size(get("block_size"))
  out.size = check_dev_size(t, out.block_size, decls, bdecl)
  out.queues = check_int("queues", get("queues"), 1, limits.max_queues)
  out.depth = check_int("depth", get("depth"), 1, limits.max_depth)
  out.max_io = check_max_io(get("max_io"), limits.max_io_max)
  out.read_only = check_bool("read_only", get("read_only"))
  out.discard = check_bool("discard", get("discard"))
  out.pin = get("pin")
  if out.pin ~= "auto" and type(out.pin) ~= "boolean" then
    bad("pin", out.pin, 'must be true, false or "auto"')
  end
  out.batch = check_bool("batch", get("batch"))
  out.need_get_data = check_bool("need_get_data", get("need_get_data"))
  if out.need_get_data and out.batch then
    bad("need_get_data", true, "cannot go with batch = true (batch I/O has no NEED_GET_DATA"
      .. " command)")
  end
  -- UBLK_F_IO_DESC_SIZE (7.3+): each request's descriptor takes this many
  -- bytes of the queue's array the server maps; the kernel writes the
  -- first 24 and leaves the rest to what later kernels may add
  if t.io_desc_size ~= nil then
    out.io_desc_size = check_int("io_desc_size", t.io_desc_size, 24, 256)
    if out.io_desc_size % 8 ~= 0 then
      bad("io_desc_size", t.io_desc_size, "must be a multiple of 8 from 24 to 256 (bytes)")
    end
  end
  out.shmem_zc = check_shmem_zc(t)
  -- threads a queue (UBLK_F_PER_IO_DAEMON, 6.16+): each serves every
  -- threads-th tag on its own ring, so at most one a tag
  out.threads = check_int("threads", get("threads"), 1, out.depth)
  out.poll_us = check_int("poll_us", get("poll_us"), 0, MAX_POLL_US)
  out.latency = check_bool("latency", get("latency"))
  out.recovery = check_recovery(t.recovery)
  block_limits.check(t, out)
  out.id = check_int("id", get("id"), -1, MAX_ID)
  out.backend = check_backend(get("backend"), decls)
  out.name = check_string("name", t.name, true)
  -- a backend option left out is the backend's own default (file's direct)
  local obj = type(out.backend) == "table" and out.backend or nil
  local name = backend_name(out.backend)
  check_options(t, name, obj, decls, out, name and bdecl)
  return out
end

-- validate(t [, limits]) -> new normalised table.  Bad parameters are a
-- mistake in the caller's script, so this raises error(msg, 2) rather than
-- returning nil, msg: nothing sensible can run with a half-valid device.
function params.validate(t, limits)
  local ok, res = pcall(normalise, t, limits)
  if ok then return res end
  if getmetatable(res) == check.Failure then error(res.msg, 2) end
  error(res, 0)  -- a bug in this module: keep its original message
end

return params
