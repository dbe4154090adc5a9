-- ublk.cli: what `ublk-lua SCRIPT [ARGS...]` does.
--
-- Runs the script; starts the devices it returned (a parameter table or a
-- list of them) and any it created itself; prints each path once usable;
-- serves until SIGINT or SIGTERM; removes every device it made.  Any
-- failure prints one line on stderr, removes what exists, exits non-zero.
local ublk = require "ublk"
local core = require "ublk.core"
local params = require "ublk.params"

local cli = {}

local USAGE = [[
usage: ublk-lua SCRIPT [ARGS...]

Serves the block devices that SCRIPT describes until SIGINT or SIGTERM,
then removes them.  SCRIPT returns a table of device parameters, e.g.
  return { size = "256MiB", queues = 2, depth = 128, backend = "memory" }
(or a list of such tables), or creates devices with require "ublk".
ARGS reach the script as `...`.

  -h, --help     show this help
  -V, --version  show the version
Environment: UBLK_LOG=error|warn|info|debug
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
  return ("%s ready (%s, %d queue%s x %d, %s)"):format(dev.path,
    params.format_size(info.size), info.queues, info.queues == 1 and "" or "s",
    info.depth, info.backend)
end

-- Runs the script and brings its devices up; raises a message on failure.
local function bring_up(script, argv)
  local chunk, err = loadfile(script)
  if not chunk then error(err, 0) end
  local ok, ret = xpcall(function() return chunk(unpack(argv, 2)) end,
    function(e)
      if os.getenv("UBLK_LOG") == "debug" then return debug.traceback(e, 2) end
      return e
    end)
  if not ok then error(ret, 0) end
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

  local ok, devices = pcall(bring_up, first, argv)
  if not ok then
    complain(devices)
    ublk.close_all()
    return 1
  end
  local sig = core.wait_signal()
  local status = 0
  for _, dev in ipairs(devices) do
    local path = dev.path
    local okc, cerr = dev:close()
    if okc then
      say("%s removed (%s)", path, sig or "signal")
    else
      complain(("%s: %s"):format(path, cerr))
      status = 1
    end
  end
  ublk.close_all()
  return status
end

return cli
