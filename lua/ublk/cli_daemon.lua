-- ublk.cli_daemon: `ublk-lua add` and `ublk-lua recover`: a server started
-- in the background (its own session, output appended to the log in the
-- state directory).  They return once every device is usable, printing one
-- "dev id N: ..." line each, or with the server's own one-line error and
-- nothing left behind.  The server is this executable with UBLK_SERVE (what
-- to serve, JSON) and UBLK_READY_FD (where to say it is ready): cli.lua.
local ffi = require "ffi"
local libc = require "ublk.libc"
local core = require "ublk.core"
local json = require "ublk.json"
local state = require "ublk.state"
local options = require "ublk.options"

local daemon = {}

daemon.LOG = state.dir .. "/server.log"

local complain = require("ublk.cli_out").complain
-- scripts, plugins and logs as records name them (state.absolute)
local absolute = state.absolute

-- Reads what a spawned server says on its ready pipe: each line to
-- on_line, until one of `stops` ("ready", "prepared"), an "error: ..."
-- line or the end.  Returns the stop line, or nil and the error (nil at
-- an end without one).
function daemon.read_until(pipe, stops, on_line)
  for l in pipe:lines() do
    if stops[l] then return l end
    local err = l:match("^error: (.*)")
    if err then return nil, err end
    on_line(l)
  end
  return nil
end

local read_until = daemon.read_until

local function print_line(l) io.stdout:write(l, "\n") end

-- Starts the server for `what` and relays its readiness: 0 or 1, and
-- the server's error if it said one.
local function spawn(what)
  ffi.C.mkdir(state.dir, tonumber("755", 8))
  local pid, fd, errno = core.spawn_server({ what.restart and "--supervise" or "--serve" },
    daemon.LOG, json.encode(what))
  if not pid then complain("cannot start the server: " .. fd) return 1, errno end
  local pipe = io.open("/proc/self/fd/" .. fd, "r")
  ffi.C.close(fd)
  local ready, err = read_until(pipe, { ready = true }, print_line)
  pipe:close()
  io.stdout:flush()
  if ready then return 0 end
  -- it said why once it had removed what it made; or it died first
  if err then complain(err) else
    complain(("the server (pid %d) ended before its devices were ready: see %s"):format(
      pid, daemon.LOG))
  end
  return 1
end

-- The -t form: a device without a script, as kublk and ublksrv make one.
-- o.options: the backend's own (--OPTION VALUE, cli_args.lua).
local function spec_of(o)
  local t = { backend = o.type, id = o.id, queues = o.queues, depth = o.depth, threads = o.threads,
    size = o.size, recovery = o.recovery, batch = o.batch, need_get_data = o.need_get_data,
    record = o.record and absolute(o.record) }
  for k, v in pairs(o.options or {}) do t[k] = v end
  -- a plugin named relative to here (./x.so) is loaded again by servers
  -- that recover the device from anywhere; one without a '/' is dlopen()'s
  -- to search for, and stays as it is
  local decl = options.find(o.type)
  for _, x in ipairs(decl and decl.options or {}) do
    local v = t[x.name]
    if x.plugin and type(v) == "string" and v:find("/") then t[x.name] = absolute(v) end
  end
  return t
end

function daemon.add(o)
  -- the supervisor's restart is a recovery, which the kernel gives a
  -- user's device none of (docs/unprivileged.md)
  if o.restart and o.restart > 0 and not core.privileged() then
    complain(("add --restart %d: restarting a server takes recovery, which a device made "
      .. "without root (CAP_SYS_ADMIN) cannot have (docs/unprivileged.md)"):format(o.restart))
    return 1
  end
  local what = o.type and { spec = spec_of(o) } or { script = absolute(o.script), args = o.args }
  what.restart = o.restart -- then a supervisor serves it (cli_supervise.lua)
  return spawn(what)
end

-- What a new server for device id must do to take over every device its
-- dead server served, from `script` (or the recorded one): the n-th device
-- the script makes takes over the one that was n-th before.  `live`: the
-- server still runs and will hand them over (reload).
function daemon.takeover(id, script, args, live)
  local info, err = core.dev_info(id)
  if not info then return nil, ("device %d: %s"):format(id, err) end
  local st = state.read(id)
  if not live and st and state.server_alive(st) and info.state == "LIVE" then
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
  -- a device `resize` changed (its record says so) is served at the size
  -- it has now by the script that made it; a script named here must
  -- serve the size the device has, as ever
  local function resized(rec, i)
    return not script and rec and rec.resized and i.size > 0 and i.size or nil
  end
  what.takeover[tostring(st and st.index or 1)] = { id = id, store = st and st.store,
    size = resized(st, info) }
  what.shared = st and st.shared -- its ublk.shared regions, in order
  -- its siblings, LIVE ones too while the kernel has not yet seen their
  -- server die: the recovery waits for that (runtime/device/device_recover.c)
  if st and st.pid then
    for _, other_id in ipairs(state.ids()) do
      local other = other_id ~= id and state.read(other_id)
      local oi = other and other.pid == st.pid and other.start == st.start
        and core.dev_info(other_id)
      if oi and other.index and (live or state.recoverable(oi, other)) then
        what.takeover[tostring(other.index)] = { id = other_id, store = other.store,
          size = resized(other, oi) }
      end
    end
  end
  return what
end

-- A server started for `script` with `args` (a restart under a service
-- manager: what systemd's Restart= runs) takes back the devices a dead
-- server of the same script and arguments left recoverable, instead of
-- adding new ones beside them: `what` with takeover set, or nil.
function daemon.restart_of(script, args)
  local want = json.encode(args or {})
  for _, id in ipairs(state.ids()) do
    local st = state.read(id)
    if st and st.script == script and json.encode(st.args or {}) == want
        and not state.server_alive(st) then
      local info = core.dev_info(id)
      if info and state.recoverable(info, st) then
        local what = daemon.takeover(id)
        if what then return what, id, st.pid end
      end
    end
  end
  return nil
end

local function states_of(ids)
  local out = {}
  for _, id in ipairs(ids) do
    local info = core.dev_info(id)
    out[#out + 1] = ("device %d %s"):format(id, info and info.state or "gone")
  end
  return table.concat(out, ", ")
end

-- After a recovery that failed: where each device it was to take is.
local function left(what)
  local ids = {}
  for _, t in pairs(what.takeover) do ids[#ids + 1] = t.id end
  table.sort(ids)
  complain(("%s; `ublk-lua recover -n %d SCRIPT` takes them with another script, "
    .. "`ublk-lua del -n ID` removes one"):format(states_of(ids), ids[1]))
end

-- `recover -n ID [SCRIPT ARGS...]`.  Without SCRIPT, the recorded one; if
-- that fails before it took anything (a file edited since, now broken),
-- the copy of it that last served the device, which the state directory
-- keeps.
function daemon.recover(o)
  local what, err = daemon.takeover(o.id, o.script, o.args)
  if not what then complain(err) return 1 end
  if spawn(what) == 0 then return 0 end
  local st, info = state.read(o.id), core.dev_info(o.id)
  if o.script or not (st and st.saved and info and state.recoverable(info, st)) then
    left(what)
    return 1
  end
  complain(("recover -n %d: %s failed; recovering from the copy of it that last served "
    .. "the device (%s)"):format(o.id, tostring(what.script), st.saved))
  what.source = st.saved
  if spawn(what) == 0 then return 0 end
  left(what)
  return 1
end

-- (not core.wait_signal: once a signal has come that answers at once, and
-- the waits below would spin through their limits)
local wait_until = libc.wait_until

-- Waits up to `secs` for child pid to end (and reaps it): whether it did.
local function reaped(pid, secs)
  return wait_until(function() return libc.reap(pid) ~= false end, secs)
end

-- The ids of the devices the server a record names serves.
local function siblings(st)
  local ids = {}
  for _, id in ipairs(state.ids()) do
    local other = state.read(id)
    if other and other.pid == st.pid and other.start == st.start and core.dev_info(id) then
      ids[#ids + 1] = id
    end
  end
  return ids
end

-- The devices of the server record st names, if each may be handed over:
-- refuse(id, info) (info: core.dev_info(id), nil if it has just gone)
-- says why one may not, or nil.  ids | nil, refuse's why.
function daemon.check_siblings(st, refuse)
  local ids = siblings(st)
  for _, id in ipairs(ids) do
    local why = refuse(id, core.dev_info(id))
    if why then return nil, why end
  end
  return ids
end

-- The server record st names leaves devices `ids` to the next one (`reload`,
-- `quiesce`): each is marked (state.handover_path: the server leaves it
-- instead of removing it), the server is asked to end (SIGTERM), and the
-- marks go once it has gone or after `secs`.  true once it has gone;
-- false if it has not in secs; nil, why if it could not be signalled.
function daemon.hand_over(st, ids, secs)
  local marked = {}
  for _, id in ipairs(ids) do
    local f = io.open(state.handover_path(id), "w")
    if f then f:close() marked[#marked + 1] = id end
  end
  local function unmark() for _, id in ipairs(marked) do os.remove(state.handover_path(id)) end end
  local sent, serr = state.signal(st, 15)
  if not sent then unmark() return nil, serr end
  local gone = wait_until(function() return not state.server_alive(st) end, secs)
  unmark()
  return gone
end

-- After a new server failed with the devices handed over: the previous
-- script (the copy the old server ran, kept in the state directory)
-- takes them back.  0 if it did.
local function roll_back(id, old, why)
  complain(("reload -n %d: the new server failed after the hand-over: %s"):format(id, why))
  local what, err = daemon.takeover(id)
  if what then
    what.script, what.args, what.spec, what.source = old.script, old.args, old.spec, old.saved
    io.stdout:write("rolling back to the previous script\n")
    if spawn(what) == 0 then
      complain(("reload -n %d: the previous script serves the devices again; nothing was "
        .. "reloaded"):format(id))
      return 0
    end
  else
    complain(err)
  end
  complain(("reload -n %d: the devices wait for a server (their I/O waits with them): "
    .. "`ublk-lua recover -n %d SCRIPT` resumes them"):format(id, id))
  return 1
end

-- `reload -n ID [SCRIPT ARGS...]`: the server of device ID hands its
-- devices over to a new one, from SCRIPT or the recorded script, and the
-- block devices never go away.  As `nginx -t` before a reload, the new
-- server first does everything short of taking them: runs the script,
-- makes its backends, maps its ublk.shared regions (the layout checked
-- against the running one), checks each device against what it would
-- serve; it says "prepared", and only then is the old server asked to
-- hand over (QUIESCE_DEV where the kernel has it, else by leaving, as a
-- crash would).  Any failure before that leaves the old server serving,
-- untouched.  One after it (an on_start that raises) hands the devices
-- back to the previous script, from the copy the old server ran.
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
  local ids, why = daemon.check_siblings(st, function(id, oi)
    if oi and not oi.flags.user_recovery then
      return ("device %d, served by the same server (pid %d) as device %d, was added with "
        .. "recovery = false: a reload hands over every device of its server, so each needs "
        .. "recovery on; nothing was reloaded"):format(id, st.pid, o.id)
    end
  end)
  if not ids then complain(why) return 1 end
  local what, terr = daemon.takeover(o.id, o.script, o.args, true)
  if not what then complain(terr) return 1 end
  what.gate = true
  ffi.C.mkdir(state.dir, tonumber("755", 8))
  local t0 = core.clock()
  local pid, fd, go = core.spawn_server({ "--serve" }, daemon.LOG, json.encode(what), true)
  if not pid then complain("cannot start the server: " .. fd) return 1 end
  local pipe = io.open("/proc/self/fd/" .. fd, "r")
  ffi.C.close(fd)
  local lines = {}
  local function keep(l) lines[#lines + 1] = l end
  local prepared, perr = read_until(pipe, { prepared = true }, keep)
  if not prepared then
    ffi.C.close(go)
    pipe:close()
    reaped(pid, 15)
    complain(("reload -n %d: the new script failed; nothing was handed over, the server "
      .. "(pid %d) serves on: %s"):format(o.id, st.pid,
      perr or ("the new server ended before it was ready: see " .. daemon.LOG)))
    return 1
  end
  -- the new server is ready to take them: the old one hands them over
  local t_pause = core.clock()
  local gone, serr = daemon.hand_over(st, ids, 10)
  if gone == nil then
    ffi.C.close(go)
    pipe:close()
    reaped(pid, 15)
    complain(("reload -n %d: its server could not be asked to hand over: %s; the new one "
      .. "was called off"):format(o.id, serr))
    return 1
  end
  if not gone then
    ffi.C.close(go)
    pipe:close()
    reaped(pid, 15)
    complain(("reload -n %d: the server (pid %d) did not hand its devices over in 10 s; "
      .. "the new one was called off: %s"):format(o.id, st.pid, states_of(ids)))
    return 1
  end
  ffi.C.write(go, "go\n", 3)
  ffi.C.close(go)
  local ready, rerr = read_until(pipe, { ready = true }, keep)
  pipe:close()
  if ready then
    for _, l in ipairs(lines) do print_line(l) end
    io.stdout:write(("reloaded in %.0f ms (I/O paused %.0f ms)\n"):format(
      (core.clock() - t0) * 1000, (core.clock() - t_pause) * 1000))
    return 0
  end
  -- it gave the devices back as it found them (cli.lua: handover): once
  -- it has gone, the previous script takes them
  reaped(pid, 15)
  roll_back(o.id, st, rerr or ("it ended before its devices were ready: see " .. daemon.LOG))
  return 1 -- nothing was reloaded, whether or not the rollback served them again
end

return daemon
