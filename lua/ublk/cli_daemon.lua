-- ublk.cli_daemon: `ublk-lua add` and `ublk-lua recover`: a server started
-- in the background (its own session, output appended to the log in the
-- state directory).  They return once every device is usable, printing one
-- "dev id N: ..." line each, or with the server's own one-line error and
-- nothing left behind.  The server is this executable with UBLK_SERVE (what
-- to serve, JSON) and UBLK_READY_FD (where to say it is ready): cli.lua.
local ffi = require "ffi"
local core = require "ublk.core"
local json = require "ublk.json"
local state = require "ublk.state"

local daemon = {}

daemon.LOG = state.dir .. "/server.log"

pcall(ffi.cdef, "int close(int fd);")
pcall(ffi.cdef, "int mkdir(const char *path, unsigned mode);")

local function complain(msg) io.stderr:write("ublk-lua: ", msg, "\n") end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local pwd = os.getenv("PWD") or io.popen("pwd"):read("*l")
  return pwd .. "/" .. path
end

-- Starts the server for `what` and relays its readiness: 0 or 1.
local function spawn(what)
  ffi.C.mkdir(state.dir, tonumber("755", 8))
  local pid, fd, errno = core.spawn_server({ what.restart and "--supervise" or "--serve" },
    daemon.LOG, json.encode(what))
  if not pid then complain("cannot start the server: " .. fd) return 1, errno end
  local pipe = io.open("/proc/self/fd/" .. fd, "r")
  ffi.C.close(fd)
  local ready, said = false, false
  for l in pipe:lines() do
    if l == "ready" then ready = true break end
    local err = l:match("^error: (.*)")
    if err then complain(err) said = true break end
    io.stdout:write(l, "\n")
  end
  pipe:close()
  io.stdout:flush()
  if ready then return 0 end
  -- it said why once it had removed what it made; or it died first
  if not said then
    complain(("the server (pid %d) ended before its devices were ready: see %s"):format(
      pid, daemon.LOG))
  end
  return 1
end

-- The -t form: a device without a script, as kublk and ublksrv make one.
local function spec_of(o)
  return { backend = o.type, id = o.id, queues = o.queues, depth = o.depth,
    size = o.size, path = o.file, uri = o.uri, recovery = o.recovery, batch = o.batch }
end

function daemon.add(o)
  local what = o.type and { spec = spec_of(o) } or { script = absolute(o.script), args = o.args }
  what.restart = o.restart -- then a supervisor serves it (cli_supervise.lua)
  return spawn(what)
end

-- What a new server for device id must do to take over every device its
-- dead server served, from `script` (or the recorded one): the n-th device
-- the script makes takes over the one that was n-th before.
function daemon.takeover(id, script, args)
  local info, err = core.dev_info(id)
  if not info then return nil, ("device %d: %s"):format(id, err) end
  local st = state.read(id)
  if st and state.server_alive(st) and info.state == "LIVE" then
    return nil, ("device %d is LIVE, served by pid %d: only a device whose server has "
      .. "died can be recovered"):format(id, st.pid)
  end
  local what = { takeover = {} }
  if script then
    what.script, what.args = absolute(script), args
  elseif st and (st.script or st.spec) then
    what.script, what.args, what.spec = st.script, st.args, st.spec
  else
    return nil, ("device %d: ublk-lua has no record of what served it: name the script "
      .. "(ublk-lua recover -n %d SCRIPT [ARGS...])"):format(id, id)
  end
  what.takeover[tostring(st and st.index or 1)] = { id = id, store = st and st.store }
  what.shared = st and st.shared -- its ublk.shared regions, in order
  -- its siblings, LIVE ones too while the kernel has not yet seen their
  -- server die: the recovery waits for that (runtime/device_recover.c)
  if st and st.pid then
    for _, other_id in ipairs(state.ids()) do
      local other = other_id ~= id and state.read(other_id)
      local oi = other and other.pid == st.pid and other.start == st.start
        and core.dev_info(other_id)
      if oi and other.index and state.recoverable(oi, other) then
        what.takeover[tostring(other.index)] = { id = other_id, store = other.store }
      end
    end
  end
  return what
end

function daemon.recover(o)
  local what, err = daemon.takeover(o.id, o.script, o.args)
  if not what then complain(err) return 1 end
  return spawn(what)
end

local function sleep(s) core.wait_signal(math.floor(s * 1000)) end

-- `reload -n ID [SCRIPT ARGS...]`: the server of device ID hands its
-- devices over (QUIESCE_DEV where the kernel has it, else by leaving, as
-- a crash would) and a new one, from SCRIPT or the recorded script, takes
-- them over as `recover` does.  The block devices never go away: their
-- I/O waits meanwhile, and with recovery "reissue" none fails.
function daemon.reload(o)
  local info, err = core.dev_info(o.id)
  if not info then complain(("device %d: %s"):format(o.id, err)) return 1 end
  local st = state.read(o.id)
  if not (st and state.server_alive(st)) then
    complain(("device %d has no running ublk-lua server to reload (ublk-lua recover "
      .. "-n %d takes over one whose server died)"):format(o.id, o.id))
    return 1
  end
  if not info.flags.user_recovery then
    complain(("device %d was added with recovery = false: it cannot be reloaded"):format(o.id))
    return 1
  end
  -- the server hands over all its devices: one without recovery would be
  -- left to the kernel (DEAD), so then nothing is asked of the server
  local ids = {}
  for _, id in ipairs(state.ids()) do
    local other = state.read(id)
    local oi = other and other.pid == st.pid and other.start == st.start and core.dev_info(id)
    if oi and not oi.flags.user_recovery then
      complain(("device %d, served by the same server (pid %d) as device %d, was added with "
        .. "recovery = false: a reload hands over every device of its server, so each needs "
        .. "recovery on; nothing was reloaded"):format(id, st.pid, o.id))
      return 1
    end
    if oi then ids[#ids + 1] = id end
  end
  local t0 = core.clock()
  local marked = {}
  for _, id in ipairs(ids) do
    local f = io.open(state.handover_path(id), "w")
    if f then f:close() marked[#marked + 1] = id end
  end
  local sent, serr = state.signal(st, 15)
  if not sent then
    for _, id in ipairs(marked) do os.remove(state.handover_path(id)) end
    complain(("device %d: its server could not be asked to hand it over: %s"):format(o.id, serr))
    return 1
  end
  local gone = false
  for _ = 1, 400 do
    if not state.server_alive(st) then gone = true break end
    sleep(0.025)
  end
  for _, id in ipairs(marked) do os.remove(state.handover_path(id)) end
  if not gone then
    complain(("device %d: its server (pid %d) did not hand it over in 10 s"):format(o.id, st.pid))
    return 1
  end
  local status = daemon.recover(o)
  if status == 0 then
    io.stdout:write(("reloaded in %.0f ms\n"):format((core.clock() - t0) * 1000))
  end
  return status
end

return daemon
