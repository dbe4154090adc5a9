-- ublk.backend: the objects a device's `backend` can be, on the control
-- side (the script's own Lua state).
--
--   ublk.NAME{ OPTION = ... }  a C backend (ublk.file{ path = ... }): each
--                              declares its options (ublk.options)
--   ublk.backend{ size = ..., read = function(self, req) ... end, ... }
--   ublk.shared(bytes)   memory every queue's Lua state sees at one address
--
-- A Lua backend's handlers run on every queue thread, each in that queue's
-- own lua_State with its own copy of the backend (see ublk.transfer): no
-- locks, no hand-off.  C backends it captures become delegates there.
local ffi = require "ffi"
local core = require "ublk.core"
local options = require "ublk.options"
local params = require "ublk.params"
local transfer = require "ublk.transfer"
local globals = require "ublk.globals"

local M = {}

-- ---- C backends ----

local CBackend = {}
CBackend.__index = CBackend
M.CBackend = CBackend

-- What every C backend object takes besides its declared options.
local COMMON = { size = true, read_only = true }

-- ublk.NAME{...} for C backend `name`: its declared options (ublk.options)
-- and size, read_only; a string alone is its first required option
-- (ublk.file "disk.img").
local function c_backend(name, t)
  local decl = options.find(name)
  if type(t) == "string" then
    for _, o in ipairs(decl.options) do
      if o.required then t = { [o.name] = t } break end
    end
  end
  t = t or {}
  if type(t) ~= "table" then error(("ublk.%s: expected a table of options"):format(name), 3) end
  -- ublk.plugin{ path = ... }: the plugin's declaration from here on
  local perr
  decl, perr = options.find(name, nil, t)
  if not decl then error(("ublk.%s: %s"):format(name, perr), 3) end
  local b = setmetatable({ name = name }, CBackend)
  for k, v in pairs(t) do
    local o = decl.by[k]
    if not o and not COMMON[k] then
      local known = {}
      for _, x in ipairs(decl.options) do known[#known + 1] = x.name end
      known[#known + 1] = "read_only, size"
      error(("ublk.%s: unknown option '%s' (known: %s)"):format(name, tostring(k),
        table.concat(known, ", ")), 3)
    end
    if o then
      local ok, rule = options.check(o, v)
      if ok == nil then
        error(("ublk.%s: %s = %s: %s"):format(name, k, type(v) == "string"
          and ("%q"):format(v) or tostring(v), rule), 3)
      end
    end
    b[k] = v
  end
  for _, o in ipairs(decl.options) do
    if o.required and b[o.name] == nil then
      error(("ublk.%s: missing option '%s' (%s)"):format(name, o.name, o.help), 3)
    end
  end
  if b.size ~= nil then
    local n, err = params.parse_size(b.size)
    if not n then error(("ublk.%s: bad size: %s"):format(name, err), 3) end
    b.size = n
  end
  return b
end

-- ublk.memory{}, ublk.file{ path = ... }, ...: one for each C backend
M.c_backends = {}
for _, decl in ipairs((options.backends())) do
  M.c_backends[decl.name] = function(t) return c_backend(decl.name, t) end
end

-- Delegate methods exist only on queue threads; calling them here is a
-- mistake worth a clear word.
for op in pairs(core.ops) do
  CBackend[op] = function()
    error("ublk: " .. op .. "() on a C backend works only inside a Lua backend's handlers", 2)
  end
end

-- ---- shared memory ----

local Shared = {}
Shared.__index = Shared
M.Shared = Shared

-- In a server the CLI runs (M.keep, set by lua/ublk/cli_serve.lua) and where the
-- kernel has user recovery, regions live in files on /dev/shm that outlive
-- a crash: the n-th region a script makes is recorded with its devices
-- (lua/ublk/state.lua), and the server recovering them maps the same file
-- as its n-th region (M.takeover_shared), so a Lua RAM disk keeps its
-- data.  A server that ends normally removes them.  Elsewhere (a program
-- of one's own, the specs) there is no `recover` to find them: a memfd.
M.kept, M.keep = {}, false
local recovery_possible

-- Names for the files a recoverable device keeps in /dev/shm:
-- /dev/shm/ublk-lua.TOKEN.N (stores) and .sN (ublk.shared regions), TOKEN
-- 16 random hex digits drawn once per process.  Not the pid: a process
-- that gets a dead server's pid would make, and open, that server's
-- files.  Opened with O_EXCL (runtime/backends/backend_memory.c, lua_core.c): a
-- new device starts empty whatever is there; only a recovery takes over
-- an existing file, by the name its record holds.
local token
function M.new_path(suffix)
  if not token then
    local f = assert(io.open("/dev/urandom", "rb"))
    local bytes = f:read(8)
    f:close()
    token = bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  end
  return ("/dev/shm/ublk-lua.%s.%s"):format(token, suffix)
end

local function kept_path()
  if not M.keep then return nil end
  if recovery_possible == nil then
    local f = core.features()
    recovery_possible = f and f.user_recovery or false
  end
  if not recovery_possible then return nil end
  local n = #M.kept + 1
  local taken = M.takeover_shared and M.takeover_shared[n]
  local path = taken or M.new_path("s" .. n)
  M.kept[n] = path
  return path, taken ~= nil
end

-- ublk.shared(bytes) -> { ptr = uint8_t*, size = n }: zeroed, C-owned,
-- page aligned, the same address in every queue's Lua state.  Lives as
-- long as this object (and any device whose backend captured it).
function M.shared(size)
  local n, err = params.parse_size(size)
  if not n or n == 0 then error("ublk.shared: bad size: " .. tostring(err or size), 2) end
  local path, existing = kept_path()
  local mem, merr = core.shared_alloc(n, path, existing)
  if not mem then error("ublk.shared: " .. merr, 2) end
  return setmetatable({ ptr = ffi.cast("uint8_t *", mem:address()), size = n, _mem = mem }, Shared)
end

function Shared:address()
  return tonumber(ffi.cast("uintptr_t", self.ptr))
end

-- The region's file (a memfd, or its /dev/shm file): zero copy reads and
-- writes it on the queues' rings.  -1 for a region of a queue's own state.
function Shared:fd()
  return self._mem and self._mem:fd() or -1
end

-- ---- Lua backends ----

local LuaBackend = {}
LuaBackend.__index = LuaBackend
M.LuaBackend = LuaBackend

-- Handler names and their op numbers come from the C runtime's op table.
local HANDLERS = core.ops
local HOOKS = { open = true, close = true, on_start = true, on_stop = true }
M.HANDLERS = HANDLERS

-- Whether a field of spec (or of a table in it: `sides = { ... }`) is a
-- delegate that knows its own size (a file's length, an export's): then
-- a backend without a size takes the smallest of theirs (backend_lua.c).
local function sizes_own(v)
  local b = getmetatable(v) == CBackend and v.size == nil and options.find(v.name)
  return b and b.sizes_itself
end
local function sizes_itself(spec)
  for _, v in pairs(spec) do
    if sizes_own(v) then return true end
    if type(v) == "table" and getmetatable(v) == nil then
      for _, x in pairs(v) do
        if sizes_own(x) then return true end
      end
    end
  end
  return false
end

-- ublk.backend(spec) -> backend.  spec: size (without one, the smallest
-- size of its file and nbd delegates that have none of their own), handlers (read, write, flush,
-- discard, write_zeroes), hooks (open, close per queue; on_start, on_stop
-- per device), async = true to run handlers as coroutines, fua = true if
-- write honours req.flags' FUA bit, timeout = seconds a request may take
-- (30), copy = "buffer" | "inline" | "auto_reg" how its requests' data moves
-- (docs/tuning.md; the best the kernel has without it),
-- counters = { name = "counter" | "gauge", ... } the backend's own
-- numbers (at most 16), which its handlers set as self.counters.name and
-- stats, dev:stats() and /metrics show.  Any other field is the author's own
-- state, copied to every queue as `self`.
function M.backend(spec)
  if type(spec) ~= "table" then error("ublk.backend: expected a table", 2) end
  if type(spec.read) ~= "function" then
    error("ublk.backend: 'read' must be a function(self, req)", 2)
  end
  for k, v in pairs(spec) do
    if (HANDLERS[k] or HOOKS[k]) and type(v) ~= "function" then
      error(("ublk.backend: '%s' must be a function, got a %s"):format(k, type(v)), 2)
    end
  end
  if spec.timeout ~= nil and (type(spec.timeout) ~= "number" or not (spec.timeout > 0)
      or spec.timeout > core.timeout_max_s) then
    error(("ublk.backend: 'timeout' must be a number of seconds from 0 to %d, got %s")
      :format(core.timeout_max_s, tostring(spec.timeout)), 2)
  end
  if spec.copy ~= nil and spec.copy ~= "buffer" and spec.copy ~= "inline"
      and spec.copy ~= "auto_reg" then
    error(("ublk.backend: copy = %s: a Lua backend's requests move by \"buffer\" (the tag's "
      .. "buffer), \"inline\" (user copy) or \"auto_reg\" (user copy, and zero copy of "
      .. "large ones into ublk.shared); without copy, the best the kernel has")
      :format(require("ublk.check").show(spec.copy)), 2)
  end
  if spec.counters ~= nil then
    if type(spec.counters) ~= "table" then
      error(("ublk.backend: 'counters' must be a table of name = \"counter\" or \"gauge\", got a %s")
        :format(type(spec.counters)), 2)
    end
    require "ublk.stats" -- the statistics block's cdef: how many, how long
    local most, longest = ffi.C.UBLK_STATS_COUNTERS, ffi.C.UBLK_STATS_COUNTER_NAME - 1
    local n = 0
    for name, kind in pairs(spec.counters) do
      n = n + 1
      if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") or #name > longest then
        error(("ublk.backend: counters: '%s' is no name: letters, digits and _, not first a "
          .. "digit, at most %d"):format(tostring(name), longest), 2)
      end
      -- a counter's metric is NAME_total: x_total would meet counter x's
      if name:match("_total$") then
        error(("ublk.backend: counters: '%s' ends in _total, which /metrics adds to a "
          .. "counter's name itself: call it '%s'"):format(name, name:gsub("_total$", "")), 2)
      end
      if kind ~= "counter" and kind ~= "gauge" then
        error(("ublk.backend: counters.%s = %s: must be \"counter\" (only grows) or \"gauge\""
          .. " (goes up and down)"):format(name, tostring(kind)), 2)
      end
    end
    if n > most then
      error(("ublk.backend: counters: %d declared, at most %d"):format(n, most), 2)
    end
  end
  local size
  if spec.size ~= nil then
    local err
    size, err = params.parse_size(spec.size)
    if not size then error("ublk.backend: bad size: " .. err, 2) end
  end
  return setmetatable({ name = "lua", spec = spec, size = size,
    sized_by_delegates = size == nil and sizes_itself(spec) or nil }, LuaBackend)
end

local function flag(v) return v and "1" or nil end

-- A C backend's string options for create(), from its declaration: the
-- object's own, else the device's (p, validated against the same
-- declaration).  An option left out is left to the backend.
local function c_opts(b, p)
  -- a policy (ublk.record, ublk.lying: lua/ublk/policy.lua) over a base
  if b.policy_opts then return b:policy_opts(p, c_opts) end
  p = p or {}
  local out = {}
  -- a plugin's path is the object's or, for a name, the device's (a
  -- plugin that does not load leaves the backend's own declaration)
  local decl = options.find(b.name)
  local own = options.find(b.name, nil, b)
  if own == nil or own == decl then own = options.find(b.name, nil, p) end
  decl = own or decl
  for _, o in ipairs(decl.options) do
    local v = b[o.name]
    if v == nil then v = p[o.name] end
    if v ~= nil then out[o.name] = options.to_c(o, v) end
  end
  return out
end

-- The option of backend `name` that holds its data beyond the server
-- (backend.h, UBLK_OPT_STORE), or nil.  t (the options, or the backend
-- object) names a plugin, whose declaration is the one that says.
function M.store_option(name, t)
  -- a policy's (ublk.record, ublk.lying: lua/ublk/policy.lua) is its
  -- base's, under "base."
  if t and t["base.backend"] then
    local base = {}
    for k, v in pairs(t) do
      local inner = k:match("^base%.(.+)")
      if inner then base[inner] = v end
    end
    local inner = M.store_option(t["base.backend"], base)
    return inner and "base." .. inner
  end
  local decl = options.find(name, nil, t)
  return decl and decl.store_opt
end

-- What the C runtime needs to build this backend for a device of `size`
-- bytes: its string options (runtime/lua/backend_lua.c reads them): the
-- packed handlers, the C delegates it captured, what to advertise.  With
-- `keep` (recovery on) delegates with a store option (the memory
-- backend's) keep their data in /dev/shm as ublk.shared regions do, and
-- are taken over the same way.
function LuaBackend:core_opts(size, read_only, keep)
  local inner, index = {}, {}
  local function special(v)
    local mt = getmetatable(v)
    if mt == CBackend then
      if not index[v] then
        inner[#inner + 1] = v
        index[v] = #inner - 1
      end
      return { "inner", index[v] }
    elseif mt == Shared then
      return { "shared", v:address(), v.size, v:fd() }
    end
  end
  -- copy the data-plane part: on_start/on_stop stay in this state
  local copy = {}
  for k, v in pairs(self.spec) do
    if k ~= "on_start" and k ~= "on_stop" then copy[k] = v end
  end
  local s = self.spec
  local visit, missing = globals.checker()
  local chunk = transfer.pack(copy, special, visit)
  for _, msg in ipairs(missing()) do core.log("warn", msg) end
  local opts = {
    chunk = chunk, path = package.path, cpath = package.cpath,
    async = flag(s.async == true), flush = flag(s.flush ~= nil), copy = s.copy,
    fua = flag(s.fua == true and s.flush ~= nil),
    discard = flag(s.discard ~= nil and not read_only),
    write_zeroes = flag(s.write_zeroes ~= nil and not read_only),
    delegates = tostring(#inner),
    timeout_ms = s.timeout and ("%d"):format(math.ceil(s.timeout * 1000)) or nil,
    -- ublk.record{ base = this } (lua/ublk/policy.lua): its log
    record = self.record_log,
  }
  for i, v in ipairs(inner) do
    local prefix = "delegate." .. (i - 1) .. "."
    opts[prefix .. "backend"] = v.name
    -- the device's size: a delegate must hold it (an export or a file
    -- shorter than the device is refused at create, naming both sizes);
    -- 0 when the device takes its size from the delegates: each that
    -- sizes itself finds its own (a file's length, an export's)
    opts[prefix .. "size"] = ("%d"):format(v.size or size)
    opts[prefix .. "read_only"] = flag(v.read_only or read_only)
    for k, x in pairs(c_opts(v)) do opts[prefix .. k] = x end
    local store = M.store_option(v.name, v)
    if store and keep and v[store] == nil then
      local path, existing = kept_path()
      opts[prefix .. store], opts[prefix .. "recover"] = path, existing and "1" or nil
    end
  end
  return opts
end

-- core_spec(p) -> the backend part of core.create's table, for validated
-- parameters p: { backend = name, opts = { ... }, read_only = ... }.
-- Raises a message (no position) when a Lua backend cannot be copied.
function M.core_spec(p)
  local b, read_only = p.backend, p.read_only
  local mt = type(b) == "table" and getmetatable(b)
  if mt == LuaBackend then
    if not b.spec.write then read_only = true end -- nothing to write with
    return { backend = "lua", opts = b:core_opts(p.size, read_only, p.recovery ~= false),
      read_only = read_only }
  elseif mt == CBackend then
    return { backend = b.name, opts = c_opts(b, p), read_only = read_only }
  elseif type(b) == "table" then
    error("backend must be a name, ublk.backend{...}, or a C backend such as ublk."
      .. options.backends()[1].name .. "()", 0)
  end
  return { backend = b, opts = c_opts({ name = b }, p), read_only = read_only }
end

-- Helpers that only make sense on a queue thread (ublk.queue replaces
-- them there).
local function queue_only(name)
  return function()
    error("ublk." .. name .. ": only inside a Lua backend's handlers (on a queue thread)", 2)
  end
end
M.queue_side = {
  sleep = queue_only("sleep"),
  io = { pread = queue_only("io.pread"), pwrite = queue_only("io.pwrite"),
    fsync = queue_only("io.fsync") },
  queue_id = function() return nil end,
}

return M
