-- ublk.state: what ublk-lua records of each device it serves, in
-- /run/ublk-lua/devN (JSON), so that `ublk-lua list`, `del` and `recover`
-- know a device's server, script and store after the server is gone.
-- The runtime writes {id, pid, store} at ADD_DEV, changes only the pid
-- when a recovering server has started the device again, and removes the
-- file (and the store) with the device (runtime/device_owner.c); the
-- server adds the rest here once the device is started.  Entries whose
-- pid is dead are reported as such, never trusted.
local ffi = require "ffi"
local json = require "ublk.json"

local state = { dir = "/run/ublk-lua" }

ffi.cdef [[
int kill(int pid, int sig);
int rename(const char *old, const char *new);
]]
pcall(ffi.cdef, "int getpid(void);")

function state.path(id)
  return ("%s/dev%d"):format(state.dir, id)
end

-- state.read(id) -> table | nil
function state.read(id)
  local f = io.open(state.path(id))
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local t = json.decode(s)
  return type(t) == "table" and t or nil
end

-- Replaces the file in one rename: a reader sees the old or the new one.
function state.write(id, t)
  local path = state.path(id)
  local tmp = path .. ".tmp"
  local f = io.open(tmp, "w")
  if not f then return nil end
  f:write(json.encode(t), "\n")
  f:close()
  if ffi.C.rename(tmp, path) ~= 0 then os.remove(tmp); return nil end
  return true
end

-- state.ids() -> the ids that have a record, sorted
function state.ids()
  local ids = {}
  for _, name in ipairs(require("ublk.core").list_dir(state.dir)) do
    local id = name:match("^dev(%d+)$")
    if id then ids[#ids + 1] = tonumber(id) end
  end
  table.sort(ids)
  return ids
end

-- `ublk-lua reload` marks each device of a server it takes over, then
-- signals it: the server leaves them instead of removing them.
function state.handover_path(id)
  return ("%s/dev%d.handover"):format(state.dir, id)
end

function state.handover_asked(devices)
  for _, dev in ipairs(devices) do
    local f = io.open(state.handover_path(dev.id))
    if f then f:close() return true end
  end
  return false
end

-- The copy of the script that a server ran for device id, kept while the
-- device exists (runtime/device_owner.c removes it with the record): the
-- last good one, for a `reload` whose new script fails after the
-- hand-over, even once the file has been edited.
function state.script_copy_path(id)
  return ("%s/dev%d.lua"):format(state.dir, id)
end

function state.save_script(id, source)
  local path = state.script_copy_path(id)
  local f = io.open(path .. ".tmp", "w")
  if not f then return nil end
  f:write(source)
  f:close()
  if ffi.C.rename(path .. ".tmp", path) ~= 0 then os.remove(path .. ".tmp") return nil end
  return path
end

-- Is process pid alive?  (kill 0: EPERM still means it exists.)
function state.alive(pid)
  if type(pid) ~= "number" or pid <= 0 then return false end
  return ffi.C.kill(pid, 0) == 0 or ffi.errno() ~= 3 -- ESRCH
end

-- Is a device (core.dev_info) whose record is st kept for a new server
-- (`ublk-lua recover`)?  User recovery on, and not DEAD.  LIVE counts once
-- its recorded server has died: the kernel notices the death only when
-- the dead server's io_uring and /dev/ublkcN are torn down, which can end
-- well after the process has gone (runtime/device.h: ublk_dev_recoverable).
function state.recoverable(info, st)
  if not info.flags.user_recovery or info.state == "DEAD" then return false end
  return info.state ~= "LIVE" or (st ~= nil and st.pid ~= nil and not state.alive(st.pid))
end

-- Records what a started device's server is: the CLI's `how` says how it
-- was made ({ script =, args = } or { spec = }) and which device of it.
function state.record(dev, how)
  local info = dev:info()
  local t = state.read(dev.id) or {}
  t.id, t.pid = dev.id, ffi.C.getpid()
  t.store = info.store
  t.backend, t.size, t.queues, t.depth = info.backend, info.size, info.queues, info.depth
  t.recovery = dev.params.recovery
  local kept = require("ublk.backend").kept
  t.shared = #kept > 0 and { unpack(kept) } or nil
  for k, v in pairs(how or {}) do t[k] = v end
  return state.write(dev.id, t)
end

return state
