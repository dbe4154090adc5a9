-- ublk.cli_supervise: `ublk-lua add --restart N`: a small supervisor that
-- runs the server as its child and, when the server dies from a signal (a
-- crash, kill -9), starts a new one that recovers its devices (cli_daemon's
-- takeover), at most N times, logging each.  A server that ends by itself
-- (SIGTERM, `ublk-lua del`) ends the supervisor too; SIGTERM to the
-- supervisor is passed on to the server.
local ffi = require "ffi"
local libc = require "ublk.libc" -- and the C library calls below (ffi.C)
local core = require "ublk.core"
local json = require "ublk.json"
local daemon = require "ublk.cli_daemon"


local C = ffi.C
local supervise = {}

local function log(fmt, ...)
  io.stderr:write(("ublk-lua[%d]: supervisor: "):format(C.getpid()), fmt:format(...), "\n")
  io.stderr:flush()
end

-- Starts a server for `what`; returns pid, its "dev id" lines, or nil, why.
local function start(what)
  local w = {}
  for k, v in pairs(what) do if k ~= "restart" then w[k] = v end end
  local pid, fd = core.spawn_server({ "--serve" }, daemon.LOG, json.encode(w))
  if not pid then return nil, fd end
  local pipe = io.open("/proc/self/fd/" .. fd, "r")
  C.close(fd)
  local lines = {}
  local ready, err = daemon.read_until(pipe, { ready = true },
    function(l) lines[#lines + 1] = l end)
  pipe:close()
  if ready then return pid, lines end
  return nil, err or ("the server (pid %d) ended before its devices were ready"):format(pid)
end

local reap = libc.reap

function supervise.run(what)
  local ready = io.open("/proc/self/fd/" .. (os.getenv("UBLK_READY_FD") or "3"), "w")
  local max = tonumber(what.restart) or 3
  local pid, lines = start(what)
  if not pid then
    ready:write("error: ", lines, "\n")
    ready:close()
    return 1
  end
  local first = tonumber(lines[1]:match("^dev id (%d+):"))
  for _, l in ipairs(lines) do ready:write(l, ", supervised\n") end
  ready:write("ready\n")
  ready:close()
  C.close(tonumber(os.getenv("UBLK_READY_FD") or "3"))
  local restarts = 0
  while true do
    if core.wait_signal(200) then
      C.kill(pid, 15) -- its own handling removes the devices
      reap(pid, true)
      return 0
    end
    local how, n = reap(pid, false)
    if how == "exit" then return n end
    if how == "signal" then
      if restarts >= max then
        log("server pid %d died from signal %d: giving up after %d restarts; "
          .. "its devices stay recoverable (ublk-lua recover -n %d)", pid, n, restarts, first)
        return 1
      end
      restarts = restarts + 1
      local t0 = core.clock()
      log("server pid %d died from signal %d: recovering its devices (restart %d of %d)",
        pid, n, restarts, max)
      local take, err = daemon.takeover(first)
      if take then pid, err = start(take) end
      if not take or not pid then
        log("cannot recover: %s", err)
        return 1
      end
      log("server pid %d serves them again, %.0f ms after the death was seen", pid,
        (core.clock() - t0) * 1000)
    end
  end
end

return supervise
