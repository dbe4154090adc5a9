-- ublk: describe and drive Linux ublk block devices from Lua.
--
--   local ublk = require "ublk"
--   local dev = assert(ublk.device{ size = "256MiB", queues = 2 })
--   assert(dev:start())          -- dev.path is now a usable block device
--   ...                          -- I/O on dev.path; queue threads serve it
--   dev:close()                  -- stops (if started) and deletes it
--
-- Mistakes (bad parameters, start twice, use after close) raise errors.
-- Operational failures (the kernel refuses, no ublk driver) return
-- nil, "ENAME: message", errno.
local libc = require "ublk.libc"
local core = require "ublk.core"
local params = require "ublk.params"
local backend = require "ublk.backend"
local options = require "ublk.options"

local ublk = { version = core.version, params = params, errno = require "ublk.errno" }

-- Devices created and not yet closed, so that the CLI (or anyone) can
-- remove everything on exit: ublk.close_all().
local open_devices = {}

local Device = {}
Device.__index = Device

-- Backends: a device's `backend` is a name or one of these (see
-- ublk/backend.lua and docs/backends.md).
-- policies over a C backend: lua/ublk/policy.lua, docs/crash-testing.md
local policy = require "ublk.policy"
ublk.record, ublk.lying = policy.record, policy.lying
ublk.backend, ublk.shared = backend.backend, backend.shared
ublk._Shared = backend.Shared
-- On queue threads ublk.queue replaces these with the working ones.
ublk.sleep, ublk.io, ublk.queue_id = backend.queue_side.sleep,
  backend.queue_side.io, backend.queue_side.queue_id
ublk.thread_id = core.gettid
-- ublk.NAME{...} for each C backend (ublk.memory, ublk.file, ...); a
-- backend named as one of the functions above would hide it.
for name, make in pairs(backend.c_backends) do
  if ublk[name] ~= nil then error("ublk: C backend '" .. name .. "' hides ublk." .. name) end
  ublk[name] = make
end

-- ublk.clock() -> seconds on the monotonic clock, for measuring latency
ublk.clock = libc.clock

local function limits()
  -- queues: the kernel's own limit (UBLK_MAX_NR_QUEUES); it makes at most
  -- one per CPU and the device takes what it made (dev:info().queues_asked)
  return { max_queues = 4096, backends = options.backends() }
end

-- UBLK_F_USER_RECOVERY (8) with _REISSUE (16) or _FAIL_IO (512)
local RECOVERY_FLAGS = { reissue = 8 + 16, queue = 8, fail = 8 + 512 }

local stores = 0

-- What a recovering server takes over (ublk-lua recover sets it): the
-- n-th device the script makes recovers device takeover[n].id, with its
-- memory store takeover[n].store, instead of adding a new one.  Each is
-- only prepared by ublk.device (its backend made, the device checked
-- against it: device.h) and taken at dev:start, so that a script's
-- devices are all checked before the kernel is asked to hand any over.
-- ublk._gate, when the CLI sets it (`reload`), runs once before the first
-- is taken: the old server still serves until it returns true.
ublk._takeover, ublk._made, ublk._gate = {}, 0, nil

-- The recovery the user asked for, or by default "reissue" where the
-- kernel has it for us (never for a device made without root: ctrl.h);
-- a backend with a store option (the memory backend's) keeps its data in
-- /dev/shm for it.
local function recovery_of(p, spec)
  local r = p.recovery
  if r == nil and p.shmem_zc then r = false end -- params.lua says why
  if r == nil then
    local f = core.features()
    r = f and f.user_recovery_reissue and core.privileged() and "reissue" or false
  end
  p.recovery = r
  if not r then return 0 end
  local store = backend.store_option(spec.backend, spec.opts)
  if store and not spec.opts[store] then
    stores = stores + 1
    spec.opts[store] = backend.new_path(stores)
  end
  return RECOVERY_FLAGS[r]
end

-- ublk.device(t) -> device | nil, "ENAME: message", errno
-- Validates everything before asking the kernel for anything, so a bad
-- parameter never leaves a half-made device behind.
function ublk.device(t)
  local ok, p = pcall(params.validate, t, limits())
  if not ok then error(p, 2) end
  local okb, spec = pcall(backend.core_spec, p)
  if not okb then error("ublk.device: " .. spec, 2) end
  spec.size, spec.block_size, spec.queues, spec.depth = p.size, p.block_size, p.queues, p.depth
  spec.max_io, spec.discard, spec.pin, spec.id = p.max_io, p.discard, p.pin, p.id
  spec.latency, spec.poll_us, spec.batch = p.latency, p.poll_us, p.batch
  spec.need_get_data, spec.io_desc_size = p.need_get_data, p.io_desc_size or 0
  spec.shmem_zc, spec.threads = p.shmem_zc, p.threads
  spec.no_auto_part_scan, spec.dma_align = p.no_auto_part_scan, p.dma_align or 0
  spec.max_segments, spec.max_segment_size = p.max_segments or 0, p.max_segment_size or 0
  spec.segment_boundary = p.segment_boundary or 0
  ublk._made = ublk._made + 1
  local takeover = ublk._takeover[ublk._made]
  if takeover then
    spec.recover, spec.prepare = takeover.id, true
    -- the recorded store (or the user's own) is taken with its data: only
    -- here, a server recovering that device (backend.h: UBLK_OPT_STORE)
    local store = backend.store_option(spec.backend, spec.opts)
    if store and takeover.store then spec.opts[store] = takeover.store end
    -- "recover" beside the store: a policy's base's under "base."
    if store and spec.opts[store] then spec.opts[store:gsub("[^.]+$", "recover")] = "1" end
    -- a policy continues what it keeps itself: the recorder, its log
    if spec.opts["base.backend"] or spec.opts.record then spec.opts.recover = "1" end
    -- a device `resize` changed since its script was written is served at
    -- the size it has now: a C backend that resizes, or a Lua backend
    -- through its delegates (below)
    local c = options.find(spec.backend)
    if takeover.size and c and c.resizable then spec.size = takeover.size end
    -- a Lua backend resizes through its delegates (runtime/lua/backend_lua.c),
    -- each of which holds the whole device
    if takeover.size and spec.backend == "lua" and tonumber(spec.opts.delegates or 0) > 0 then
      spec.size = takeover.size
      for k in pairs(spec.opts) do
        if k:match("^delegate%.%d+%.size$") and spec.opts[k] ~= "0" then
          spec.opts[k] = ("%d"):format(takeover.size)
        end
      end
    end
  end
  spec.recovery_flags = recovery_of(p, spec)
  local d, err, errno = core.create(spec)
  if not d then return nil, err, errno end
  local info = d:info()
  local b = p.backend
  local dev = setmetatable({
    _d = d, id = info.id, path = "/dev/ublkb" .. info.id,
    name = p.name, params = p, _spec = takeover and spec or nil,
    log = policy.log_of(b), -- a recorder's log: dev:mark()
    -- keeps ublk.shared memory the handlers use alive too
    _hooks = getmetatable(b) == backend.LuaBackend and b.spec or nil,
  }, Device)
  open_devices[dev] = true
  return dev
end

local function check(dev, method)
  if getmetatable(dev) ~= Device then
    error("ublk: " .. method .. " must be called as dev:" .. method .. "()", 3)
  end
  return dev._d:state()
end

-- A prepared takeover (ublk._takeover): through the gate, then the kernel.
local function take(self)
  local gate = ublk._gate
  if gate then
    ublk._gate = nil
    local ok, err, errno = gate()
    if not ok then return nil, err, errno end
  end
  return self._d:resume_recovery(self._spec)
end

function Device:start()
  local state = check(self, "start")
  if state ~= "created" and state ~= "prepared" then
    error(("ublk: cannot start device %d: it is %s%s"):format(self.id, state,
      state == "stopped" and " (create a new device to serve again)" or ""), 2)
  end
  if state == "prepared" then
    local ok, err, errno = take(self)
    if not ok then return nil, err, errno end
  end
  local ok, err, errno = self._d:start()
  if not ok then return nil, err, errno end
  local hooks = self._hooks
  if hooks and hooks.on_start then
    local okh, herr = xpcall(function() return hooks:on_start(self) end, debug.traceback)
    if not okh then
      -- a device taken over is left for the next server, as it was found
      -- (a stop would take the disk away from whoever has it mounted)
      if self._spec then self._handed = self._d:handover() == true
      else self._d:stop() end
      return nil, "EIO: on_start failed: " .. tostring(herr), ublk.errno.EIO
    end
  end
  return true
end

-- dev:mark(name) -> true | nil, "ENAME: message": names this point of
-- the recording (docs/crash-testing.md); only on a recorded device.
function Device:mark(name)
  check(self, "mark")
  if not self.log then
    error(("ublk: dev:mark: device %d does not record (backend = ublk.record{...})")
      :format(self.id), 2)
  end
  return require("ublk.crash_log").mark(self.log, name)
end

function Device:stop()
  local state = check(self, "stop")
  if state ~= "started" then
    error(("ublk: cannot stop device %d: it is %s"):format(self.id, state), 2)
  end
  local hooks = self._hooks
  if hooks and hooks.on_stop then
    local okh, herr = xpcall(function() return hooks:on_stop(self) end, debug.traceback)
    if not okh then io.stderr:write("ublk-lua: on_stop failed: ", tostring(herr), "\n") end
  end
  return self._d:stop()
end

-- Closing twice is harmless: cleanup paths may race to it.
-- A device whose queue is stuck for good cannot be closed (EDEADLK): it
-- stays in ublk.devices() and only ending the process removes it.
function Device:close()
  local state = check(self, "close")
  local ok, err, errno = true, nil, nil
  if state == "started" then
    ok, err, errno = self:stop()
    local okc, cerr, cerrno = self._d:close()
    if ok then ok, err, errno = okc, cerr, cerrno end
  elseif state ~= "closed" then
    ok, err, errno = self._d:close()
  end
  if self._d:state() == "closed" then open_devices[self] = nil end
  return ok, err, errno
end

-- dev:resize(size [, force]) -> true | nil, "ENAME: message", errno: a
-- started device serves `size` bytes from now on (UPDATE_SIZE, Linux
-- 6.16+); memory, file and nbd backends grow.  A smaller size cuts the
-- data past it: refused unless force is true.
function Device:resize(size, force)
  local state = check(self, "resize")
  local bytes, err = params.parse_size(size)
  if not bytes then error(("ublk: resize: size = %s: %s"):format(tostring(size), err), 2) end
  if force ~= nil and type(force) ~= "boolean" then
    error("ublk: resize: force must be true or false, got " .. tostring(force), 2)
  end
  if state ~= "started" then
    error(("ublk: cannot resize device %d: it is %s"):format(self.id, state), 2)
  end
  return self._d:resize(bytes, force == true)
end

function Device:state()
  return check(self, "state")
end

function Device:info()
  local state = check(self, "info")
  if state == "closed" then
    error(("ublk: device %d is closed"):format(self.id), 2)
  end
  local info = self._d:info()
  info.path = self.path
  info.state = state
  info.name = self.name
  return info
end

-- Per-queue counters plus their sum in `total`, and `latency`: for read,
-- write and other requests since the start { count, p50_us, p99_us,
-- p999_us } (the server's part of each request, runtime/queue/stats.h).
-- errnos, and a Lua backend's counters and gauges, by name as `stats`
-- and /metrics name them (ublk.stats).
function Device:stats()
  check(self, "stats")
  local queues = self._d:stats()
  local address = self._d:stats_address()
  local total = { errnos = {}, counters = {}, gauges = {} }
  if address then
    local stats = require "ublk.stats"
    local snap = stats.at(address):snapshot()
    local s = stats.summary(snap)
    queues.latency = { read = s.read, write = s.write, other = s.other }
    for i, q in ipairs(queues) do
      local sq = snap.queues[i] or {}
      q.errnos, q.counters, q.gauges = sq.errnos or {}, sq.counters or {}, sq.gauges or {}
    end
    total.errnos, total.counters, total.gauges = s.errnos, s.counters, s.gauges
  end
  for _, q in ipairs(queues) do
    for k, v in pairs(q) do
      if type(v) == "number" and k ~= "tid" and k ~= "cpu" then
        total[k] = (total[k] or 0) + v
      end
    end
  end
  queues.total = total
  return queues
end

function Device:__tostring()
  return ("ublk device %d (%s)"):format(self.id, self._d:state())
end

-- The devices created and not closed yet, oldest first.
function ublk.devices()
  local list = {}
  for dev in pairs(open_devices) do list[#list + 1] = dev end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

-- Closes every device still open; returns how many it closed.
function ublk.close_all()
  local n = 0
  for dev in pairs(open_devices) do
    dev:close()
    n = n + 1
  end
  return n
end

function ublk.features()
  return core.features()
end

-- ublk.wait_signal([seconds]) -> "SIGTERM" | nil: waits for a termination
-- signal (SIGINT, SIGTERM, SIGHUP, ...), at most `seconds` (default:
-- forever).  For scripts that run their own loop under `ublk-lua`:
--   while not ublk.wait_signal(1) do print(dev:stats().total.reads) end
-- Once one has come it answers at once; the CLI then removes the devices.
-- A script a server runs (ublk-lua SCRIPT, add) also answers `ublk-lua
-- resize` and `ublk-lua mark` for its devices while it waits here
-- (ublk.requests); the server's own wait is this one.
local watch -- the state directory's inotify watch; false: none to be had
function ublk.wait_signal(seconds)
  if seconds ~= nil and (type(seconds) ~= "number" or seconds < 0) then
    error("ublk.wait_signal: seconds must be a number >= 0", 2)
  end
  local ms = seconds and math.floor(seconds * 1000 + 0.5) or -1
  -- a script the CLI runs is ready at its first wait with a device made
  -- (cli_serve.lua: settle)
  if ublk._on_wait and ublk._on_wait() then ublk._on_wait = nil end
  local requests = ublk._requests
  if not requests then return core.wait_signal(ms) end
  if watch == nil then watch = requests.watch() or false end
  local deadline = ms >= 0 and core.clock() + ms / 1000
  while true do
    local left = deadline and math.max(0, math.floor((deadline - core.clock()) * 1000 + 0.5))
    -- without a watch (no state directory): a look every 200 ms
    local wait = watch and (left or -1) or math.min(left or 200, 200)
    local sig = core.wait_signal(wait, watch or nil)
    if sig then return sig end
    if watch then requests.drain(watch) end
    requests.serve(ublk.devices())
    if deadline and core.clock() >= deadline then return nil end
  end
end

function ublk.set_log_level(level)
  core.set_log_level(level)
end

return ublk
