-- ublk.cli_resize: `ublk-lua resize -n ID SIZE [--force]`, both halves.
-- The backend lives in the server, so the server resizes: the CLI leaves
-- a request in the state directory (devN.resize: bytes and force) and
-- waits for the answer (devN.resize.out); a server serving from cli_serve.lua
-- waits for a signal or a file renamed into the state directory
-- (resize.watch), then looks for its requests (one stat per device:
-- nothing against the I/O), runs dev:resize and answers.
local ffi = require "ffi"
local libc = require "ublk.libc"
local core = require "ublk.core"
local params = require "ublk.params"
local state = require "ublk.state"

local resize = {}

local cli_out = require "ublk.cli_out"
local out, complain = cli_out.out, cli_out.complain

local wait_until = libc.wait_until

-- Requests and answers go through state.write_file, whole or not at all:
-- the reader never sees half a line.
local function request_path(id) return ("%s/dev%d.resize"):format(state.dir, id) end

-- What the server waits on beside signals: an inotify descriptor that
-- turns readable when a file is renamed into the state directory, as
-- state.write_file puts a request there, so a request is answered at once
-- and an idle server sleeps until there is something to do.  (It looked
-- every 200 ms before: 5 wakeups a second, and resize took up to 200 ms
-- more.)  nil where inotify is not to be had: then look every 200 ms.
local IN_NONBLOCK, IN_CLOEXEC, IN_MOVED_TO = 0x800, 0x80000, 0x80
function resize.watch()
  local fd = ffi.C.inotify_init1(IN_NONBLOCK + IN_CLOEXEC)
  if fd < 0 then return nil end
  if ffi.C.inotify_add_watch(fd, state.dir, IN_MOVED_TO) < 0 then
    ffi.C.close(fd)
    return nil
  end
  return fd
end

local events = ffi.new("char[4096]")
-- Reads what woke the server, so that the next wait sleeps again.
function resize.drain(fd)
  while ffi.C.read(fd, events, 4096) > 0 do end
end

-- The server's half: answers each request left for one of its devices.
function resize.serve_requests(devices)
  for _, dev in ipairs(devices) do
    local path = request_path(dev.id)
    local req = state.read_file(path)
    if req then
      os.remove(path)
      local bytes, force = req:match("^(%d+) (%a+)")
      local ok, err
      if not bytes then
        err = "EINVAL: unreadable resize request"
      elseif dev:state() ~= "started" then
        err = "EINVAL: the device is " .. dev:state()
      else
        local okc, r, e = pcall(dev.resize, dev, tonumber(bytes), force == "force")
        ok, err = okc and r, okc and e or r
        -- a recovery by the recorded script serves the new size
        -- (cli_daemon.lua: takeover)
        if ok then state.record(dev, { resized = true }) end
      end
      state.write_file(path .. ".out", ok and ("ok %d\n"):format(dev:info().size)
        or ("error %s\n"):format(tostring(err):gsub("\n", " ")))
    end
  end
end

-- The CLI's half: 0 resized, 1 refused or failed, 2 a SIZE that is none.
function resize.run(o)
  local bytes, perr = params.parse_size(o.script or "")
  if not o.script then complain("resize: give -n ID SIZE") return 2 end
  -- `resize -n ID SIZE --force`, as the usage writes it: after SIZE too
  for _, a in ipairs(o.args or {}) do
    if a ~= "--force" then complain(("resize: unexpected argument '%s'"):format(a)) return 2 end
    o.force = true
  end
  if not bytes then complain(("resize: SIZE '%s': %s"):format(o.script, perr)) return 2 end
  local info, err = core.dev_info(o.id)
  if not info then complain(("device %d: %s"):format(o.id, err)) return 1 end
  local f = core.features() or {}
  if not f.update_size then
    complain(("device %d: resize needs UBLK_F_UPDATE_SIZE (Linux 6.16+), which this kernel "
      .. "lacks"):format(o.id))
    return 1
  end
  if bytes < info.size and not o.force then
    complain(("device %d: %s is smaller than its %s: the data past it would be cut; shrink "
      .. "what is on it first (e.g. resize2fs), then resize --force"):format(o.id,
      params.format_size(bytes), params.format_size(info.size)))
    return 1
  end
  local st = state.read(o.id)
  if not (st and state.server_alive(st) and info.state == "LIVE") then
    complain(("device %d has no running ublk-lua server: its server resizes it"):format(o.id))
    return 1
  end
  local path = request_path(o.id)
  os.remove(path .. ".out")
  if not state.write_file(path, ("%d %s\n"):format(bytes, o.force and "force" or "keep")) then
    complain(("device %d: cannot write %s"):format(o.id, path))
    return 1
  end
  local answer
  wait_until(function()
    answer = state.read_file(path .. ".out")
    return answer
  end, 15)
  os.remove(path .. ".out")
  if not answer then
    os.remove(path)
    complain(("device %d: its server (pid %d) did not answer in 15 s (a script busy in"
      .. " a loop of its own that never calls ublk.wait_signal takes no requests:"
      .. " dev:resize() in it does)"):format(o.id, st.pid))
    return 1
  end
  local now = answer:match("^ok (%d+)")
  if not now then
    complain(("device %d: %s"):format(o.id, (answer:match("^error (.-)%s*$") or answer)))
    return 1
  end
  out("dev id %d: resized from %s to %s", o.id, params.format_size(info.size),
    params.format_size(tonumber(now)))
  return 0
end

return resize
