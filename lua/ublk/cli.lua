-- ublk.cli: what `ublk-lua SCRIPT [ARGS...]` does.
--
-- Runs the script; starts the devices it returned (a parameter table or a
-- list of them) and any it created itself; prints each path once usable;
-- serves until a termination signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT,
-- SIGUSR1, ...); removes every device it made.  A signal that arrives while
-- the script's own code runs interrupts it, and the devices are removed
-- the same way.  Any failure prints one line on stderr, removes what
-- exists, exits non-zero.
local ublk = require "ublk"
local core = require "ublk.core"
local params = require "ublk.params"

local cli = {}

local USAGE = [[
usage: ublk-lua SCRIPT [ARGS...]

Serves the block devices that SCRIPT describes until a termination signal
(SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, ...), then removes them.  SCRIPT returns a table of device parameters, e.g.
  return { size = "256MiB", queues = 2, depth = 128, backend = "memory" }
(or a list of such tables), or creates devices with require "ublk".
ARGS reach the script as `...`.

  -h, --help     show this help
  -V, --version  show the version
Environment: UBLK_LOG=error|warn|info|debug
  UBLK_STOP_TIMEOUT=SECONDS  after a signal, how long the script may take to
                 remove its devices before they are removed without it (5)
]]

local function say(fmt, ...)
  io.stdout:write(fmt:format(...), "\n")
  io.stdout:flush()
end

local function complain(msg)
  io.stderr:write("ublk-lua: ", tostring(msg), "\n")
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

local function describe(dev)
  local info = dev:info()
  return ("%s ready (%s, %d queue%s x %d, %s%s)"):format(dev.path,
    params.format_size(info.size), info.queues, info.queues == 1 and "" or "s",
    info.depth, info.backend, info.note and ", " .. info.note or "")
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

-- Runs the script and brings its devices up; raises a message on failure.
local function bring_up(script, argv)
  local chunk, err = loadfile(script)
  if not chunk then error(err, 0) end
  local ok, ret = xpcall(function() return chunk(unpack(argv, 2)) end,
    function(e)
      if os.getenv("UBLK_LOG") == "debug" then return debug.traceback(message(e), 2) end
      return message(e)
    end)
  if not ok then error(ret, 0) end
  -- it waited for the signal itself (ublk.wait_signal): just clean up
  if core.signal_received() then return ublk.devices() end
  for i, spec in ipairs(specs_of(ret)) do
    local okd, dev, derr = pcall(ublk.device, spec)
    if not okd then
      -- the message names the field; say which script and which device
      error(("%s: device %d: %s"):format(script, i, tostring(dev):gsub("^[^:]*:%d+: ", "")), 0)
    end
    if not dev then error(("%s: device %d: %s"):format(script, i, derr), 0) end
  end
  local devices = ublk.devices()
  if #devices == 0 then error(script .. ": the script describes no device", 0) end
  for _, dev in ipairs(devices) do
    if dev:state() == "created" then
      local okd, serr = dev:start()
      if not okd then error(("%s: %s"):format(dev.path, serr), 0) end
    end
    say("%s", describe(dev))
  end
  return devices
end

function cli.main(argv)
  local first = argv[1]
  if first == nil then
    io.stderr:write(USAGE)
    return 2
  elseif first == "-h" or first == "--help" then
    io.stdout:write(USAGE)
    return 0
  elseif first == "-V" or first == "--version" then
    say("ublk-lua %s", ublk.version)
    return 0
  elseif first:sub(1, 1) == "-" then
    complain(("unknown option '%s' (try --help)"):format(first))
    return 2
  end

  -- os.exit in a script removes the devices first, as any other way out
  local exit = os.exit
  os.exit = function(...) -- luacheck: ignore
    ublk.close_all()
    return exit(...)
  end
  -- A signal interrupts the script's own code; the hook it sets fires at
  -- the next instruction, so interruptible ends inside the protected call.
  local ok, devices = xpcall(function()
    core.set_interruptible(true)
    local list = bring_up(first, argv)
    core.set_interruptible(false)
    return list
  end, function(e)
    core.set_interruptible(false)
    return e
  end)
  local sig = core.signal_received()
  if not ok and not sig then
    complain(devices)
    ublk.close_all()
    return 1
  end
  -- a script may wait for the signal itself (ublk.wait_signal)
  sig = sig or core.wait_signal()
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
  -- a queue stuck for good: only leaving removes its device (a reaper
  -- deletes it once this process has gone)
  if stuck then core.abandon(1) end
  ublk.close_all()
  return status
end

return cli
