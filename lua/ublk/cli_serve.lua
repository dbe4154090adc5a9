-- ublk.cli_serve: what `ublk-lua SCRIPT [ARGS...]` and a background
-- server (`--serve`, cli_daemon.lua) do: run the script; start the
-- devices it returned (a parameter table or a list of them) and any it
-- created itself; print each path once usable; serve until a termination
-- signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, ...); remove every
-- device it made, or hand them over to the next server (`reload`).  A
-- signal that arrives while the script's own code runs interrupts it, and
-- the devices are removed the same way.  Any failure prints one line on
-- stderr, removes what exists, exits non-zero.
local ffi = require "ffi"
require "ublk.libc" -- getpid, close (ffi.C)
local ublk = require "ublk"
local core = require "ublk.core"
local params = require "ublk.params"
local state = require "ublk.state"

local M = {}

-- A background server (cli_daemon.lua) writes to its log: say whose line.
local tag = os.getenv("UBLK_SERVE") and ("[%d]"):format(ffi.C.getpid()) or ""

local function say(fmt, ...)
  io.stdout:write(tag ~= "" and "ublk-lua" .. tag .. ": " or "", fmt:format(...), "\n")
  io.stdout:flush()
end

local function complain(msg)
  io.stderr:write("ublk-lua", tag, ": ", tostring(msg), "\n")
end

-- A returned table is one device's parameters, or a list of them.
local function specs_of(ret)
  if ret == nil then return {} end
  if type(ret) ~= "table" then
    error(("the script returned a %s: expected a table of device parameters"
      .. " or a list of them"):format(type(ret)), 0)
  end
  if ret[1] ~= nil then return ret end
  return { ret }
end

-- dev:info().copy, as the ready line says it
local COPY_TEXT = { auto_reg = "zero copy (auto_reg)", register = "zero copy (register)",
  user_copy = "user copy", buffer = "buffer copy",
  ["auto_reg+user_copy"] = "zero copy (auto_reg) + user copy",
  auto_reg_fallback = "zero copy (auto_reg, every request registered by the server)" }

-- "2 queues x 128", and why when fewer queues were made than asked for
local function queues_text(info)
  local s = ("%d queue%s x %d"):format(info.queues, info.queues == 1 and "" or "s", info.depth)
  if (info.threads or 1) > 1 then s = s .. (", %d threads each"):format(info.threads) end
  if not info.queues_asked then return s end
  if info.queues_limited_by == "kernel" then
    return s .. (" (queues = %d asked: the kernel allows %d, one per CPU)"):format(
      info.queues_asked, info.queues)
  end
  return s .. (" (queues = %d asked: backend %s serves at most %d)"):format(info.queues_asked,
    info.backend, info.queues)
end

-- A device (dev:info()) as the server's lines and `add`'s show it: size,
-- queues, backend, copy mode, the block limits that are not defaults, a
-- descriptor size asked for, and whose it is when a user made it
-- (docs/unprivileged.md).
local function device_text(info)
  local f = info.flags or {}
  return ("%s, %s, %s, %s%s%s%s%s"):format(params.format_size(info.size), queues_text(info),
    info.backend, COPY_TEXT[info.copy] or info.copy, f.need_get_data and " + get data" or "",
    params.limits_text(info),
    info.io_desc_size and (", io_desc_size %d"):format(info.io_desc_size) or "",
    f.unprivileged_dev and (", uid %d's"):format(info.owner_uid) or "")
end

local function describe(dev)
  local info = dev:info()
  return ("%s ready (%s%s%s)"):format(dev.path, device_text(info),
    info.note and ", " .. info.note or "", info.recovered and ", recovered" or "")
end

-- What a script raised, as one line, whatever it raised.
local function message(e)
  if type(e) == "string" then return e end
  if e == nil then return "the script raised an error with no message (error(nil))" end
  if type(e) == "table" and type(e.message or e.msg) == "string" then
    return e.message or e.msg
  end
  local ok, s = pcall(tostring, e)
  return ("the script raised a %s: %s"):format(type(e), ok and s or "?")
end

-- The script's devices made: each started, recorded and said ready, once
-- (at its first ublk.wait_signal when it runs a loop of its own, or after
-- it returns them: those it made since are settled then), then
-- what.ready(devices) tells `add` and systemd.
local settled = {} -- the devices settled, by device
local function settle_one(what, src, dev, i)
  settled[dev] = true
  local st = dev:state()
  if st == "created" or st == "prepared" then
    local okd, serr = dev:start()
    if not okd then error(("%s: %s"):format(dev.path, serr), 0) end
  end
  local saved = src and state.save_script(dev.id, src)
  state.record(dev, { script = what.script, args = what.args, spec = what.spec, index = i,
    saved = saved or nil }, what.gate and "reload" or dev:info().recovered and "recovery" or nil)
  say("%s", describe(dev))
end

local function settle(what, src)
  local devices = ublk.devices()
  for i, dev in ipairs(devices) do
    if not settled[dev] then settle_one(what, src, dev, i) end
  end
  if what.ready then what.ready(devices) end
  return devices
end

-- The script's text, compiled as loadfile would (a first line "#!..." is
-- skipped): what is compiled is what a device's record keeps a copy of.
local function load_script(path, name)
  local f, err = io.open(path)
  if not f then error(("cannot open %s"):format(err), 0) end
  local src = f:read("*a")
  f:close()
  local chunk, cerr = loadstring(src:gsub("^#[^\n]*", "", 1), "@" .. name)
  if not chunk then error(cerr, 0) end
  return chunk, src
end

-- `reload` starts this server with what.gate: it prepares every device
-- while the old server still serves, says "prepared" on the ready pipe,
-- and takes the devices only once reload, on stdin, says "go" (the old
-- server has handed them over); anything else calls it off.
local function gate()
  local f = io.open("/proc/self/fd/" .. (os.getenv("UBLK_READY_FD") or "3"), "w")
  if f then f:write("prepared\n") f:close() end
  local said = io.stdin:read("*l")
  if said == "go" then return true end
  return nil, "ECANCELED: the reload was called off before the hand-over", ublk.errno.ECANCELED
end

-- Brings up what `what` describes: { script =, args = } or { spec = } (a
-- parameter table, `add -t`), recovering the devices in what.takeover;
-- what.source, if given, is the text to run for what.script (the copy a
-- rollback runs).  Raises a message on failure.
local function bring_up(what)
  local script = what.script or ("add -t " .. tostring(what.spec and what.spec.backend))
  local ret, src
  -- a recovery's messages say so (two recoveries of a device race: the
  -- loser's line names the recovery, not an `add`)
  local first
  for _, t in pairs(what.takeover or {}) do first = math.min(first or t.id, t.id) end
  local label = first and ("recover -n %d: %s"):format(first, script) or script
  for n, t in pairs(what.takeover or {}) do ublk._takeover[tonumber(n)] = t end
  if what.gate then ublk._gate = gate end
  -- a script that waits for its signal itself answers `resize` and
  -- `mark` meanwhile
  ublk._requests = require "ublk.requests"
  local backend = require "ublk.backend"
  backend.keep, backend.takeover_shared = true, what.shared
  if what.spec then
    ret = require("ublk.policy").from_spec(what.spec) -- add -t ... --record LOG
  else
    local chunk
    chunk, src = load_script(what.source or script, script)
    -- a script that serves in a loop of its own is ready at its first wait
    -- for a signal with a device made: `add` and systemd need not wait for
    -- a return that comes only at the end
    settled = {}
    ublk._on_wait = function()
      if #ublk.devices() == 0 then return false end
      settle(what, src)
      return true
    end
    local ok
    ok, ret = xpcall(function() return chunk(unpack(what.args or {})) end,
      function(e)
        if os.getenv("UBLK_LOG") == "debug" then return debug.traceback(message(e), 2) end
        return message(e)
      end)
    ublk._on_wait = nil
    if not ok then error(ret, 0) end
    -- it waited for the signal itself (ublk.wait_signal): just clean up
    if core.signal_received() then return ublk.devices() end
  end
  local specs = specs_of(ret)
  for i, spec in ipairs(specs) do
    local okd, dev, derr = pcall(ublk.device, spec)
    -- the message names the field; say which script and, of several, which device
    local which = #specs > 1 and ("%s: device %d: "):format(label, i) or label .. ": "
    if not okd then
      error(which .. tostring(dev):gsub("^[^:]*:%d+: ", ""), 0)
    end
    if not dev then error(which .. derr, 0) end
  end
  local devices = ublk.devices()
  if #devices == 0 then error(script .. ": the script describes no device", 0) end
  return settle(what, src)
end

-- A background server tells `add` / `recover` here how it went.
local function report(devices, err)
  local fd = tonumber(os.getenv("UBLK_READY_FD"))
  if not fd then return end
  local f = io.open("/proc/self/fd/" .. fd, "w")
  if f then
    if err then
      f:write("error: ", tostring(err):gsub("\n", " "), "\n")
    else
      for _, dev in ipairs(devices) do
        local info = dev:info()
        f:write(("dev id %d: %s %s, pid %d%s\n"):format(dev.id, dev.path, device_text(info),
          ffi.C.getpid(), info.recovered and ", recovered" or ""))
      end
      f:write("ready\n")
    end
    f:close()
  end
  ffi.C.close(fd)
end

-- Leaves every device to the next server (none is removed) and ends the
-- process at once, so that nothing (no __gc, no reaper) deletes them
-- after: what a server does when `ublk-lua reload` asks it to, and what a
-- recovering one does when it fails (`reload` then starts the previous
-- script again).  A started device is handed over (device.h); one not
-- yet taken over is closed, which leaves it as it was.  A device that
-- cannot be handed over (recovery = false: the kernel would leave it
-- DEAD) is removed first, as a normal stop removes it.
local function handover(status, err)
  local stuck = false
  for _, dev in ipairs(ublk.devices()) do
    local path, st = dev.path, dev:state()
    local ok, herr = dev._handed, nil
    if ok then
      say("%s handed over", path)
    elseif err and not dev._spec then -- a failed recovery made it anew: it goes
      ok = false
      herr = "made by a recovery that failed"
    elseif st == "started" then
      ok, herr = dev._d:handover()
      if ok then say("%s handed over", path) end
    elseif st ~= "stopped" then
      ok = dev:close() -- prepared or created: its recovery is not begun or not ended
      if ok then say("%s left as it was", path) end
    end
    if not ok then
      complain(("%s: not handed over: %s"):format(path, herr))
      status = 1
      local okc, cerr, errno = dev:close()
      if okc then
        say("%s removed (not handed over)", path)
      else
        complain(("%s: %s"):format(path, cerr))
        stuck = stuck or errno == ublk.errno.EDEADLK
      end
    end
  end
  if err then report(nil, err) end
  core.sd_notify("STOPPING=1")
  io.stdout:flush()
  io.stderr:flush()
  -- a queue stuck for good: a reaper deletes what is still ours (the
  -- devices handed over are not: device_stop.c)
  if stuck then core.abandon(1) end
  ffi.C._exit(status)
end

-- Serves `what` until a termination signal; 0 or 1.
local function serve(what)
  -- started again for the script of a server that died (a service's
  -- Restart=): its devices, waiting recoverable, are taken back
  if what.script and not what.takeover and not what.spec then
    local daemon = require "ublk.cli_daemon"
    what.script = state.absolute(what.script)
    local back, id, pid = daemon.restart_of(what.script, what.args)
    if back then
      say("taking back device %d (and any sibling) that pid %d, which ran this script, left",
        id, pid)
      what.takeover, what.shared = back.takeover, back.shared
    end
  end
  -- os.exit in a script removes the devices first, as any other way out
  local exit = os.exit
  os.exit = function(...) -- luacheck: ignore
    ublk.close_all()
    return exit(...)
  end
  -- `add` (the ready pipe) and systemd hear once that the devices are
  -- ready, or why not
  local announced = false
  what.ready = function(devices)
    if announced then return end
    announced = true
    report(devices)
    core.sd_notify(("READY=1\nMAINPID=%d"):format(ffi.C.getpid()))
  end
  -- A signal interrupts the script's own code; the hook it sets fires at
  -- the next instruction, so interruptible ends inside the protected call.
  local ok, devices = xpcall(function()
    core.set_interruptible(true)
    local list = bring_up(what)
    core.set_interruptible(false)
    return list
  end, function(e)
    core.set_interruptible(false)
    return e
  end)
  local sig = core.signal_received()
  if not ok and not sig then
    complain(message(devices))
    -- a server taking devices over leaves them recoverable, never removed
    if what.takeover then return handover(1, message(devices)) end
    ublk.close_all()
    if not announced then report(nil, message(devices)) end
    return 1
  end
  -- under systemd (Type=notify): ready only once every device is usable
  if not announced then
    if ok then what.ready(devices) else report({}, "interrupted by " .. sig) end
  end
  -- the signal may have come while the script waited for it itself;
  -- waiting, the server answers `ublk-lua resize` and `mark` as requests
  -- come (the same wait as a script's: ublk.wait_signal, with
  -- ublk._requests set)
  while not sig do sig = ublk.wait_signal() end
  if state.handover_asked(ublk.devices()) then return handover(0) end
  local status, stuck = 0, false
  for _, dev in ipairs(ublk.devices()) do
    local path = dev.path
    local okc, cerr, errno = dev:close()
    if okc then
      say("%s removed (%s)", path, sig or "signal")
    else
      complain(("%s: %s"):format(path, cerr))
      status = 1
      stuck = stuck or errno == ublk.errno.EDEADLK
    end
  end
  core.sd_notify("STOPPING=1")
  -- a queue stuck for good: only leaving removes its device (a reaper
  -- deletes it once this process has gone)
  if stuck then core.abandon(1) end
  ublk.close_all()
  return status
end

M.serve, M.say, M.complain = serve, say, complain
return M
