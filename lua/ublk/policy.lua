-- ublk.policy: C policies over a base C backend, on the control side:
--   ublk.record{ base = BACKEND, log = PATH }   every write, discard,
--        write-zeroes and FLUSH logged (runtime/backends/backend_record.c;
--        over a Lua backend, by its own C side: runtime/lua/backend_lua.c)
--   ublk.lying{ base = BACKEND }   FLUSH completed at once, FUA dropped
--        (runtime/backends/backend_lying.c)
-- BACKEND is a C backend object (ublk.NAME{...} of a registered backend,
-- another policy) or a C backend's name; ublk.record's may be a Lua
-- backend (ublk.backend{...}) too.  Docs: docs/crash-testing.md.
local backend = require "ublk.backend"
local options = require "ublk.options"
local absolute = require("ublk.state").absolute

local M = {}

local function base_of(what, t)
  local b = t.base
  if type(b) == "string" then b = setmetatable({ name = b }, backend.CBackend) end
  if getmetatable(b) ~= backend.CBackend then
    error(("%s: 'base' must be a C backend (a ublk.NAME{...} of a registered backend, "
      .. "another policy, or a backend's name), got %s"):format(what, tostring(t.base)), 3)
  end
  return b
end

-- Its options for the runtime: its own, then the base's under "base.".
local function policy_opts(self, p, c_opts)
  local opts = { log = self.log }
  for k, v in pairs(c_opts(self.base, p)) do opts["base." .. k] = v end
  opts["base.backend"] = self.base.name
  if self.base.size then opts["base.size"] = ("%d"):format(self.base.size) end
  return opts
end

local function check_keys(what, t, allowed)
  if type(t) ~= "table" then error(what .. ": expected a table of options", 3) end
  for k in pairs(t) do
    if not allowed[k] then
      error(("%s: unknown option '%s' (allowed: %s)"):format(what, tostring(k),
        allowed._list), 3)
    end
  end
end

-- A Lua backend recorded: the same backend, whose C side logs each
-- request before its handler sees it (runtime/lua/backend_lua.c), the
-- data through the tag's buffer.
local function record_lua(b, log)
  local s = b.spec
  if s.copy ~= nil and s.copy ~= "buffer" then
    error(("ublk.record: a Lua backend is recorded with copy = \"buffer\" (the log reads"
      .. " each write's data from the tag's buffer), and this one has copy = %q"):format(
      s.copy), 3)
  end
  local r = {}
  for k, v in pairs(b) do r[k] = v end
  r.record_log = log
  return setmetatable(r, backend.LuaBackend)
end

function M.record(t)
  check_keys("ublk.record", t, { base = true, log = true, _list = "base, log" })
  if type(t.log) ~= "string" or t.log == "" then
    error(("ublk.record: 'log' must be the log's path (a new file), got %s"):format(
      tostring(t.log)), 2)
  end
  if getmetatable(t.base) == backend.LuaBackend then return record_lua(t.base, absolute(t.log)) end
  local base = base_of("ublk.record", t)
  return setmetatable({ name = "record", base = base, log = absolute(t.log), size = base.size,
    policy_opts = policy_opts }, backend.CBackend)
end

function M.lying(t)
  check_keys("ublk.lying", t, { base = true, _list = "base" })
  local base = base_of("ublk.lying", t)
  return setmetatable({ name = "lying", base = base, size = base.size,
    policy_opts = policy_opts }, backend.CBackend)
end

-- The log a backend records to (through policies over it), or nil.
function M.log_of(b)
  while type(b) == "table" do
    if b.name == "record" then return b.log end
    if b.record_log then return b.record_log end
    b = b.base
  end
end

-- `add -t TYPE ... --record LOG` (lua/ublk/cli_daemon.lua): the -t
-- form's parameters with the recorder put over its backend.
function M.from_spec(spec)
  if not spec.record then return spec end
  local t = {}
  for k, v in pairs(spec) do t[k] = v end
  local name = spec.backend or options.backends()[1].name -- the registry's first: the default
  -- the backend's own options (add -t file -f PATH) go with it, under
  -- the recorder, where they are checked as its
  local decl, opts, base = options.find(name), {}, name
  for _, o in ipairs(decl and decl.options or {}) do
    if spec[o.name] ~= nil then opts[o.name], t[o.name] = spec[o.name], nil end
  end
  if next(opts) then base = backend.c_backends[name](opts) end
  t.backend, t.record = M.record{ base = base, log = spec.record }, nil
  -- a backend that sizes itself from a path (a file's own length) does so
  -- under the recorder too (params.lua asks a policy object for a size)
  if t.size == nil and decl and decl.sizes_itself and type(spec.path) == "string" then
    local f = io.open(spec.path, "rb")
    if f then t.size = f:seek("end") f:close() end
  end
  return t
end

return M
