-- ublk.requests: what a CLI command asks of the process serving a device
-- (`resize`, `mark`): the backend, and a recorder's log, live in that
-- process, so it acts.  The CLI leaves a request in the state directory
-- (devN.KIND, one line) and waits for the answer (devN.KIND.out); a
-- serving process waits for a signal or a file renamed into the state
-- directory (watch), then looks for its requests (one stat per device and
-- kind: nothing against the I/O), acts and answers.  cli_serve.lua's wait
-- and ublk.wait_signal in a script are that wait.
local ffi = require "ffi"
local libc = require "ublk.libc"
local state = require "ublk.state"

local requests = {}

-- What a serving process does with each kind of request: handler(dev,
-- body) -> the answer's text | nil, err.
local HANDLERS = {
  resize = function(dev, body) return require("ublk.cli_resize").serve(dev, body) end,
  mark = function(dev, body)
    local ok, err = dev:mark(body)
    return ok and "" or nil, err
  end,
}

-- Requests and answers go through state.write_file, whole or not at all:
-- the reader never sees half a line.
local function path(id, kind) return ("%s/dev%d.%s"):format(state.dir, id, kind) end

-- What the server waits on beside signals: an inotify descriptor that
-- turns readable when a file is renamed into the state directory, as
-- state.write_file puts a request there, so a request is answered at once
-- and an idle server sleeps until there is something to do.  (It looked
-- every 200 ms before: 5 wakeups a second, and resize took up to 200 ms
-- more.)  nil where inotify is not to be had: then look every 200 ms.
local IN_NONBLOCK, IN_CLOEXEC, IN_MOVED_TO = 0x800, 0x80000, 0x80
function requests.watch()
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
function requests.drain(fd)
  while ffi.C.read(fd, events, 4096) > 0 do end
end

-- The server's half: answers each request left for one of its devices.
function requests.serve(devices)
  for _, dev in ipairs(devices) do
    for kind, handle in pairs(HANDLERS) do
      local p = path(dev.id, kind)
      local req = state.read_file(p)
      if req then
        os.remove(p)
        local okc, text, err = pcall(handle, dev, (req:gsub("\n$", "")))
        if not okc then text, err = nil, text end
        state.write_file(p .. ".out", text and ("ok %s\n"):format(text)
          or ("error %s\n"):format(tostring(err):gsub("\n", " ")))
      end
    end
  end
end

-- The CLI's half: ask(id, kind, body, rec) -> the answer's text | nil,
-- why.  rec is the device's state record; its server must be alive.
function requests.ask(id, kind, body, rec)
  if not (rec and state.server_alive(rec)) then
    return nil, ("device %d has no running ublk-lua server: its server does that"):format(id)
  end
  local p = path(id, kind)
  os.remove(p .. ".out")
  if not state.write_file(p, body .. "\n") then
    return nil, ("device %d: cannot write %s"):format(id, p)
  end
  local answer
  libc.wait_until(function()
    answer = state.read_file(p .. ".out")
    return answer
  end, 15)
  os.remove(p .. ".out")
  if not answer then
    os.remove(p)
    return nil, ("device %d: its server (pid %d) did not answer in 15 s (a script busy in"
      .. " a loop of its own that never calls ublk.wait_signal takes no requests)")
      :format(id, rec.pid)
  end
  local text = answer:match("^ok ?(.-)%s*$")
  if not text then
    return nil, ("device %d: %s"):format(id, answer:match("^error (.-)%s*$") or answer)
  end
  return text
end

return requests
