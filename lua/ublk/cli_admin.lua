-- ublk.cli_admin: `ublk-lua list`, `del` and `features`: every ublk device
-- on the machine as the kernel reports it, with what ublk-lua recorded of
-- the ones it serves (lua/ublk/state.lua).
local ffi = require "ffi"
local libc = require "ublk.libc"
local core = require "ublk.core"
local json = require "ublk.json"
local params = require "ublk.params"
local state = require "ublk.state"

local admin = {}

local USED = { cmd_ioctl_encode = true, user_copy = true, user_recovery = true,
  user_recovery_reissue = true, user_recovery_fail_io = true }

local cli_out = require "ublk.cli_out"
local out, complain = cli_out.out, cli_out.complain

local function sorted_names(set)
  local names = setmetatable({}, json.array)
  for k in pairs(set or {}) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- A device as `list` shows it; nil, message if the kernel has no such id.
local function describe(id)
  local info, err = core.dev_info(id)
  if not info then return nil, err end
  local d = { id = id, state = info.state, pid = info.pid, queues = info.queues,
    depth = info.depth, size = info.size, block_size = info.block_size,
    max_io = info.max_io, flags = sorted_names(info.flags), path = "/dev/ublkb" .. id,
    owner = info.flags.unprivileged_dev and { uid = info.owner_uid, gid = info.owner_gid } or nil,
    io_desc_size = info.io_desc_size,
    releasing = info.releasing or nil,
    dma_align = info.dma_align, max_segments = info.max_segments,
    max_segment_size = info.max_segment_size, segment_boundary = info.segment_boundary }
  local st, bad = state.read(id)
  d.recoverable = state.recoverable(info, st)
  if st then
    d.ublk_lua = { pid = st.pid, server = state.server_alive(st) and "running" or "dead",
      script = st.script, args = st.args, spec = st.spec, backend = st.backend,
      recovery = st.recovery, store = st.store, saved = st.saved }
    -- a recover without SCRIPT runs it (or, failing that, the saved copy)
    if d.recoverable and type(st.script) == "string" then
      local ok, err = loadfile(st.script)
      if not ok then d.ublk_lua.script_error = err end
    end
  end
  d.bad_record = bad
  return d
end

local function line(d)
  local s = ("dev id %d: %s, %s, %d queue%s x %d, block size %d"):format(d.id,
    d.releasing and d.state .. " (its server has ended: the kernel is releasing it)" or d.state,
    params.format_size(d.size), d.queues, d.queues == 1 and "" or "s", d.depth, d.block_size)
    -- (d.flags is a list of names here: no_auto_part_scan shows on the flags line)
    .. params.limits_text(d) .. (d.io_desc_size and ", io_desc_size " .. d.io_desc_size or "")
  local u = d.ublk_lua
  if u then
    s = s .. (", %s, pid %s (%s)"):format(u.backend or "?", tostring(u.pid), u.server)
    if u.script then s = s .. ", " .. u.script end
    if u.recovery then s = s .. ", recovery " .. u.recovery end
  elseif d.pid > 0 then -- a user's has its record in that user's state directory
    s = s .. ", pid " .. d.pid .. (d.owner and "" or " (not ublk-lua's)")
  end
  if d.owner then s = s .. (", uid %d's"):format(d.owner.uid) end
  if d.recoverable then s = s .. ", recoverable: ublk-lua recover -n " .. d.id end
  if d.bad_record then
    s = s .. (", unreadable record (%s): ublk-lua del -n %d removes it"):format(d.bad_record, d.id)
  end
  if u and u.script_error then
    s = s .. ("\n    its script does not compile (%s): recover -n %d runs the copy that last "
      .. "served it%s, or name a script: recover -n %d SCRIPT"):format(u.script_error, d.id,
      u.saved and " (" .. u.saved .. ")" or "", d.id)
  end
  return s
end

-- Records that cannot be believed and whose device is gone: said on
-- stderr, where `list --json` keeps its array as it is.
local function bad_records(shown)
  for _, id in ipairs(state.ids()) do
    local _, bad = state.read(id)
    if bad and not shown[id] and not core.dev_info(id) then
      complain(("no device %d, and an unreadable record (%s): ublk-lua del -n %d removes it")
        :format(id, bad, id))
    end
  end
end

-- Whether this kernel has the ublk driver: without it sysfs lists no
-- device, which must not read as "no devices".  Only ENOENT says it is
-- missing (a user who may not open it still has one).
local function have_driver()
  local f, _, errno = io.open("/dev/ublk-control")
  if f then f:close() end
  return errno ~= 2
end

function admin.list(o)
  local ids = o.id and { o.id } or core.dev_ids()
  if #ids == 0 and not have_driver() then
    complain("no ublk driver (modprobe ublk_drv)")
    return 1
  end
  local rows, shown = setmetatable({}, json.array), {}
  for _, id in ipairs(ids) do
    local d, err = describe(id)
    if d then
      rows[#rows + 1] = d
      shown[id] = true
    elseif o.id then
      local _, bad = state.read(id)
      if bad then err = err .. "; its record is unreadable (" .. bad .. "): ublk-lua del -n "
        .. id .. " removes it" end
      complain(("device %d: %s"):format(id, err))
      return 1
    end
  end
  if not o.id then bad_records(shown) end
  if o.json then
    out("%s", json.encode(rows))
  elseif #rows == 0 then
    out("no ublk devices")
  else
    for _, d in ipairs(rows) do
      out("%s", line(d))
      out("    flags: %s", table.concat(d.flags, " "))
    end
  end
  return 0
end

-- `udev NODE` (ublkcN, ublkbN, ublkbNpM), which the udev rule runs as
-- root for each node of a ublk device (contrib/udev/70-ublk-lua.rules):
-- for a user's device, the owner as udev reads imported keys; nothing for
-- root's, whose nodes stay root's.  Exit 1 when there is no such device.
function admin.udev(node)
  local id = tonumber(node and node:match("^ublk[bc](%d+)"))
  if not id then
    complain(("udev: '%s' is not the name of a ublk node (ublkcN, ublkbN)"):format(
      tostring(node)))
    return 2
  end
  local info, err = core.dev_info(id)
  if not info then complain(("udev: device %d: %s"):format(id, err)) return 1 end
  if info.flags.unprivileged_dev then
    out("UBLK_LUA_UID=%d", info.owner_uid)
    out("UBLK_LUA_GID=%d", info.owner_gid)
  end
  return 0
end

-- `stats -n ID [--json] [--watch SECONDS]`: lua/ublk/cli_stats.lua
function admin.stats(o) return require("ublk.cli_stats").run(o) end

function admin.features(o)
  local f, err = core.features()
  if not f then complain(err) return 1 end
  local names = sorted_names(f)
  if o.json then
    local used = setmetatable({}, json.array)
    for _, n in ipairs(names) do if USED[n] then used[#used + 1] = n end end
    out("%s", json.encode({ features = names, used = used }))
  else
    for _, n in ipairs(names) do
      out("%s%s", n, USED[n] and "  (used by ublk-lua)"
        or n:match("^bit %d+$") and "  (newer than this ublk-lua: no name for it)" or "")
    end
  end
  return 0
end

local wait_until = libc.wait_until

-- How many devices server rec serves: the records that name it, or where
-- its own record cannot be read, the kernel's LIVE devices of its pid.
local function devices_of(rec)
  local n = 0
  if rec.from_kernel then
    for _, id in ipairs(core.dev_ids()) do
      local i = core.dev_info(id)
      if i and i.pid == rec.pid and i.state == "LIVE" then n = n + 1 end
    end
    return n
  end
  for _, id in ipairs(state.ids()) do
    local st = state.read(id)
    if st and st.pid == rec.pid and st.start == rec.start then n = n + 1 end
  end
  return n
end


-- Does process pid hold /dev/ublkcN open?  Then it serves device id: the
-- kernel lets one process at a time have it.
local function holds_cdev(pid, id)
  local want, buf = "/dev/ublkc" .. id, ffi.new("char[256]")
  for _, fd in ipairs(core.list_dir(("/proc/%d/fd"):format(pid))) do
    local n = tonumber(ffi.C.readlink(("/proc/%d/fd/%s"):format(pid, fd), buf, 255))
    if n and n > 0 and ffi.string(buf, n) == want then return true end
  end
  return false
end

-- The server of a LIVE device whose record cannot be read: the process
-- the kernel names, if it holds the device's char device (so it is that
-- server now, whatever pid reuse happened): { pid, start, from_kernel }.
local function kernel_server(id, info)
  if info.state ~= "LIVE" or not (info.pid and info.pid > 0) then return nil end
  local start = state.proc_start(info.pid)
  if start and holds_cdev(info.pid, id) and state.proc_start(info.pid) == start then
    return { pid = info.pid, start = start, from_kernel = true }
  end
end

-- A device still LIVE after the process the kernel names as its server
-- has let go of its char device (ended, or a zombie): the kernel is
-- releasing it (it waits for the dead server's io_uring to give back the
-- request buffers it registered, then fails or requeues the requests that
-- server held).  That takes milliseconds; but if a buffer were never
-- given back, a DEL_DEV would wait in del_gendisk for good holding the
-- driver's one control mutex, and every ADD_DEV and DEL_DEV on the
-- machine behind it.  So wait for the kernel first, and if it does not
-- finish, leave this one device and say so: the others stay manageable.
admin.settle_s = 10 -- (a spec shortens it)
local function settled(id)
  local info
  local function serverless(i)
    -- (a zombie still has a pid, but no longer the char device)
    return i and i.state == "LIVE" and not (i.pid and i.pid > 0 and holds_cdev(i.pid, id))
  end
  if wait_until(function()
    info = core.dev_info(id)
    return not serverless(info)
  end, admin.settle_s, 0.05) then return true end
  complain(("device %d is still LIVE %g s after its server (pid %d) ended: the kernel has not "
    .. "released it; not deleted, as DEL_DEV would wait for its requests with every device's "
    .. "control path locked (dmesg may say why; `ublk-lua del -n %d` again later)")
    :format(id, admin.settle_s, info.pid, id))
  return false
end

-- Removes device id, whatever its server's state: a live ublk-lua server
-- serving only it is asked to end (SIGTERM, as its own signal handling
-- removes it cleanly); anything else is deleted directly.  Never waits
-- for long: DEL_DEV without waiting on a held disk.  The server is
-- signalled only as state.signal checks it: the process the record names,
-- with its start time, never one that got its pid since.
local function del_one(id, safe)
  local info, err, errno = core.dev_info(id)
  local st, bad = state.read(id)
  if not info then
    if errno == 1 or errno == 13 then -- EPERM, EACCES: the kernel's own check
      complain(("device %d: %s: it is another user's (or root's), and only they may touch it")
        :format(id, err))
      return false
    end
    if st or bad then
      core.forget(id)
      out("dev id %d: already gone; its %s record removed", id, bad and "unreadable" or "stale")
      return true
    end
    complain(("device %d: no such ublk device"):format(id))
    return false
  end
  -- --safe: the kernel stops it only if nobody has the disk open; then it
  -- goes as below (info is from before the stop: a live server still ends)
  if safe and info.state ~= "DEAD" then
    local ok, err = core.try_stop(id)
    if not ok then
      complain(("device %d: %s"):format(id, err))
      return false
    end
  end
  -- a record cut short or edited: the kernel says who serves a LIVE device
  -- (a user's device has its record in that user's state directory, out
  -- of root's sight; and the kernel takes no DEL_DEV_ASYNC for it, so a
  -- DEL_DEV with its server alive would wait for that server to go)
  local server = st or ((bad or info.flags.unprivileged_dev) and kernel_server(id, info))
  if bad then complain(("device %d: its record is unreadable (%s)"):format(id, bad)) end
  if server and state.server_alive(server) and server.pid ~= ffi.C.getpid()
      and info.state == "LIVE" and devices_of(server) == 1 then
    state.signal(server, 15)
    state.signal(server, 18) -- SIGCONT: a stopped server takes its SIGTERM too
    -- Its stop is bounded (UBLK_STOP_TIMEOUT, then a reaper): wait for the
    -- process, not for the device, which a mount keeps (DEL_DEV_ASYNC
    -- frees its number only once they let go).
    local limit = (tonumber(os.getenv("UBLK_STOP_TIMEOUT")) or 5) + 5
    local ended = wait_until(function()
      return not state.server_alive(server) or not core.dev_info(id)
    end, limit, 0.05)
    if ended and not core.dev_info(id) then
      -- the device goes first, its server right after: say "ended" only
      -- once it has (a caller may take the pid's end as the server's)
      if wait_until(function() return not state.server_alive(server) end, limit, 0.05) then
        out("dev id %d: removed (its server, pid %d, ended)", id, server.pid)
      else
        out("dev id %d: removed (its server, pid %d, not yet ended)", id, server.pid)
      end
      return true
    end
    if not ended then
      -- it holds requests DEL_DEV would wait for: end it first (SIGKILL), so
      -- that the kernel fails or requeues them, then delete
      complain(("device %d: its server (pid %d) did not remove it in %d s: killing it "
        .. "and deleting the device"):format(id, server.pid, limit))
      state.signal(server, 9)
      wait_until(function() return not state.server_alive(server) end, 5, 0.05)
    end
    -- ended, and the device is still there: held open (mounted); deleting
    -- it again says by whom
  elseif bad and info.state == "LIVE" and info.pid > 0 and state.proc_start(info.pid) then
    -- LIVE, its server unknown: deleting it would leave that server
    -- running on with nothing to serve; say so and leave it
    complain(("device %d is LIVE, served by pid %d, which does not hold /dev/ublkc%d: left "
      .. "alone"):format(id, info.pid, id))
    return false
  end
  if not settled(id) then return false end
  local ok, err = core.delete(id)
  if not ok then
    complain(("device %d: %s"):format(id, err))
    return false
  end
  out("dev id %d: removed", id)
  return true
end

function admin.del(o)
  local ids = {}
  if o.all then
    ids = state.ids() -- every device ublk-lua made, and stale records
  else
    ids[1] = o.id
  end
  local status = 0
  for _, id in ipairs(ids) do
    if not del_one(id, o.safe) then status = 1 end
  end
  return status
end

return admin
