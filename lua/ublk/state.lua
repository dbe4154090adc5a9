-- ublk.state: what ublk-lua records of each device it serves, in
-- the state directory's devN (JSON: /run/ublk-lua for root, one of the
-- user's own for a user's devices: runtime/include/state.h), so that `ublk-lua list`, `del` and `recover`
-- know a device's server, script and store after the server is gone.
-- The runtime writes {id, pid, start, store} at ADD_DEV, changes only pid
-- and start when a recovering server has started the device again, and
-- removes the file (and the store) with the device
-- (runtime/device/device_owner.c); the server adds the rest here once the device
-- is started.
--
-- A record is read, not trusted: it is validated before anything in it is
-- used (state.read), and the server it names is that process only if the
-- process with that pid has the recorded start time (field 22 of
-- /proc/PID/stat): a process that got a dead server's pid has another.
-- Every check of a server and every signal to one goes through
-- state.server_alive and state.signal.
local ffi = require "ffi"
require "ublk.libc" -- the C library calls below (ffi.C)
local json = require "ublk.json"

local state = { dir = require("ublk.core").state_dir() }


-- A path as records and `list` show it, whoever started the server and
-- from where: absolute, without "." and ".." (taken by name, as the
-- shell's cd takes them: a symlinked folder stays the folder the user
-- named).  Scripts, plugins and a recorder's log are named so.
function state.absolute(path)
  if path:sub(1, 1) ~= "/" then
    path = (os.getenv("PWD") or io.popen("pwd"):read("*l")) .. "/" .. path
  end
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return "/" .. table.concat(parts, "/")
end

function state.path(id)
  return ("%s/dev%d"):format(state.dir, id)
end

-- A store or ublk.shared region ublk-lua makes: /dev/shm/ublk-lua.NAME,
-- NAME of letters, digits, '.', '-', '_' and no "..": the only files a
-- record may make anyone remove (runtime/device/device_owner.c says the same).
function state.our_path(p)
  return type(p) == "string" and #p < 128 and p:match("^/dev/shm/ublk%-lua%.[%w%._%-]+$") ~= nil
    and not p:find("..", 1, true)
end

local function uint(v, max)
  return type(v) == "number" and v >= 0 and v == math.floor(v) and v <= max
end

-- What a record must be to be believed; nil, or what is wrong with it.
local function invalid(t, id)
  if type(t) ~= "table" then return "not a JSON object" end
  if t.id ~= id then return ("its id is %s, not %d"):format(tostring(t.id), id) end
  if not (uint(t.pid, 4194304) and t.pid > 0) then
    return ("pid %s is not a process id"):format(tostring(t.pid))
  end
  if t.start ~= nil and not uint(t.start, 2 ^ 53) then
    return ("start %s is not a start time"):format(tostring(t.start))
  end
  if t.store ~= nil and not state.our_path(t.store) then
    return ("store %s is not one of ublk-lua's (/dev/shm/ublk-lua.*)"):format(tostring(t.store))
  end
  if t.shared ~= nil then
    if type(t.shared) ~= "table" then return "shared is not a list" end
    for _, p in ipairs(t.shared) do
      if not state.our_path(p) then
        return ("shared region %s is not one of ublk-lua's (/dev/shm/ublk-lua.*)"):format(
          tostring(p))
      end
    end
  end
  for _, k in ipairs({ "size", "queues", "depth", "index" }) do
    if t[k] ~= nil and not uint(t[k], 2 ^ 53) then
      return ("%s %s is not a count"):format(k, tostring(t[k]))
    end
  end
  for _, k in ipairs({ "script", "backend" }) do
    if t[k] ~= nil and type(t[k]) ~= "string" then return k .. " is not a string" end
  end
  if t.recovery ~= nil and t.recovery ~= false and type(t.recovery) ~= "string" then
    return "recovery is neither a mode nor false"
  end
  if t.args ~= nil and type(t.args) ~= "table" then return "args is not a list" end
  if t.spec ~= nil and type(t.spec) ~= "table" then return "spec is not an object" end
end

-- state.write_file(path, text) -> true | nil, message, errno: replaces
-- the file in one rename (through PATH.tmp, removed if the rename fails),
-- so a reader sees the old text or the new, never half of it.
function state.write_file(path, text)
  local tmp = path .. ".tmp"
  local f, err, errno = io.open(tmp, "w")
  if not f then return nil, err, errno end
  f:write(text)
  f:close()
  local ok, rerr, rerrno = os.rename(tmp, path)
  if not ok then os.remove(tmp) return nil, rerr, rerrno end
  return true
end

-- state.read_file(path) -> the file's text | nil if it cannot be read
function state.read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- state.read(id) -> record | nil (no record) | nil, "why it is not one we
-- can believe" (cut short, not JSON, a bad field): such a record is shown
-- by `list` and removed by `del`, and nothing it says is used.
function state.read(id)
  local f = io.open(state.path(id))
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local t, err = json.decode(s or "")
  if err then return nil, ("%s: not JSON (%s)"):format(state.path(id), err) end
  local why = invalid(t, id)
  if why then return nil, ("%s: %s"):format(state.path(id), why) end
  return t
end

-- Replaces the file in one rename: a reader sees the old or the new one.
function state.write(id, t)
  local ok, text = pcall(json.encode, t)
  if not ok then return nil, text end
  if not state.write_file(state.path(id), text .. "\n") then return nil end
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
-- device exists (runtime/device/device_owner.c removes it with the record): the
-- last good one, for a `reload` whose new script fails after the
-- hand-over, even once the file has been edited.
function state.script_copy_path(id)
  return ("%s/dev%d.lua"):format(state.dir, id)
end

function state.save_script(id, source)
  local path = state.script_copy_path(id)
  if not state.write_file(path, source) then return nil end
  return path
end

-- The start time of process pid (field 22 of /proc/PID/stat, in clock
-- ticks since boot), or nil if there is no such process.
function state.proc_start(pid)
  if not uint(pid, 4194304) or pid == 0 then return nil end
  local s = state.read_file(("/proc/%d/stat"):format(pid))
  -- the name (field 2) may hold spaces and ')': fields 3.. follow its last ')'
  local rest = s and s:match("^.*%)%s+(.*)$")
  if not rest then return nil end
  local n = 2
  for field in rest:gmatch("%S+") do
    n = n + 1
    if n == 22 then return tonumber(field) end
  end
end

-- This process as a record names it.
function state.self()
  local pid = ffi.C.getpid()
  return { pid = pid, start = state.proc_start(pid) }
end

-- Is the server a record names ({ pid =, start = }) running?  The process
-- with that pid, with that start time.  A record of an older ublk-lua has
-- no start: its pid alone is all there is (kill 0: EPERM still means it
-- exists).
function state.server_alive(rec)
  if type(rec) ~= "table" or not uint(rec.pid, 4194304) or rec.pid == 0 then return false end
  if rec.start == nil then
    return ffi.C.kill(rec.pid, 0) == 0 or ffi.errno() ~= 3 -- ESRCH
  end
  return state.proc_start(rec.pid) == rec.start
end

-- the unified syscall numbers, which every architecture but alpha uses
local SYS_pidfd_open, SYS_pidfd_send_signal = 434, 424
local ENOSYS = 38

-- state.signal(rec, sig) -> true | nil, "ESRCH: ...", errno: sends sig to
-- the server rec names, and to no other process.  Through a pidfd: opened
-- first, then the start time checked, so that the process signalled is the
-- one checked (the pidfd stays with it even if it ends and its pid is
-- reused).  Kernels without pidfds (before 5.3): checked, then kill(),
-- which leaves the instant between the two open.
function state.signal(rec, sig)
  if not state.server_alive(rec) then
    return nil, ("ESRCH: pid %s is no longer the recorded server"):format(tostring(rec and rec.pid)), 3
  end
  local fd = tonumber(ffi.C.syscall(SYS_pidfd_open, ffi.cast("int", rec.pid), ffi.cast("unsigned", 0)))
  if fd < 0 then
    local e = ffi.errno()
    if e ~= ENOSYS then
      return nil, ("ESRCH: pid %d: the recorded server has gone"):format(rec.pid), e
    end
    if not state.server_alive(rec) or ffi.C.kill(rec.pid, sig) ~= 0 then
      return nil, ("ESRCH: pid %d: the recorded server has gone"):format(rec.pid), 3
    end
    return true
  end
  local ok = state.server_alive(rec) and tonumber(ffi.C.syscall(SYS_pidfd_send_signal,
    ffi.cast("int", fd), ffi.cast("int", sig), ffi.cast("void *", nil),
    ffi.cast("unsigned", 0))) == 0
  local e = ffi.errno()
  ffi.C.close(fd)
  if not ok then
    return nil, ("ESRCH: pid %d: the recorded server has gone"):format(rec.pid), e ~= 0 and e or 3
  end
  return true
end

-- Is a device (core.dev_info) whose record is st kept for a new server
-- (`ublk-lua recover`)?  User recovery on, and not DEAD.  LIVE counts once
-- its recorded server has died: the kernel notices the death only when
-- the dead server's io_uring and /dev/ublkcN are torn down, which can end
-- well after the process has gone (runtime/device/device.h: ublk_dev_recoverable).
function state.recoverable(info, st)
  if not info.flags.user_recovery or info.state == "DEAD" then return false end
  return info.state ~= "LIVE" or (st ~= nil and st.pid ~= nil and not state.server_alive(st))
end

-- Records what a started device's server is: the CLI's `how` says how it
-- was made ({ script =, args = } or { spec = }) and which device of it;
-- `taken` "reload" or "recovery" when this server took the device over,
-- counted in the record (reloads, recoveries: /metrics shows them) for
-- as long as the device lives.
function state.record(dev, how, taken)
  local info = dev:info()
  local t = state.read(dev.id) or {}
  local self = state.self()
  t.id, t.pid, t.start = dev.id, self.pid, self.start
  -- a store of the user's own (ublk.memory{ store = }) is theirs to keep
  t.store = state.our_path(info.store) and info.store or nil
  t.backend, t.size, t.queues, t.depth = info.backend, info.size, info.queues, info.depth
  t.recovery = dev.params.recovery
  t.log = dev.log -- a recorder's log, for `ublk-lua mark`
  local kept = require("ublk.backend").kept
  t.shared = #kept > 0 and { unpack(kept) } or nil
  for k, v in pairs(how or {}) do t[k] = v end
  if taken == "reload" then t.reloads = (tonumber(t.reloads) or 0) + 1 end
  if taken == "recovery" then t.recoveries = (tonumber(t.recoveries) or 0) + 1 end
  return state.write(dev.id, t)
end

return state
