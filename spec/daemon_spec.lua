-- What `ublk-lua recover`, `reload`, `list` and `del` decide from the
-- records (lua/ublk/state.lua) and what the kernel says of each device:
-- records in a directory of the spec's own, core.dev_info answered by the
-- spec.  No kernel ublk needed, no server started.
local core = require "ublk.core"
local json = require "ublk.json"
local state = require "ublk.state"
local daemon = require "ublk.cli_daemon"
local admin = require "ublk.cli_admin"
local stderr = require "stderr"

-- A process that has ended (and been waited for): a dead server's pid.
local function dead_pid()
  local p = io.popen("sh -c 'echo $$'")
  local pid = tonumber(p:read("*l"))
  p:close()
  return pid
end

-- A process that lives until killed: a running server's pid.
local function live_pid()
  local p = io.popen("sleep 60 > /dev/null 2>&1 & echo $!")
  local pid = tonumber(p:read("*l"))
  p:close()
  return pid
end

-- core.dev_info as the kernel would answer for devices[id].
local MiB = 1048576
local function info(state_name, recovery)
  return { state = state_name, pid = -1, flags = { user_recovery = recovery or nil },
    size = 1048576, queues = 1, depth = 128, block_size = 512, max_io = 524288 }
end

-- What fn wrote on io.stdout (the CLI's out()), and what it wrote on fd 2.
local function outputs(fn, ...)
  local f, saved = io.tmpfile(), io.stdout
  io.stdout = f -- luacheck: ignore
  local ok, said, status = pcall(stderr.capture, fn, ...)
  io.stdout = saved -- luacheck: ignore
  f:seek("set")
  local out = f:read("*a")
  f:close()
  if not ok then error(said, 0) end
  return out, said, status
end

describe("recover and reload, on records", function()
  local saved, devices, dir, deleted = {}, {}, nil, nil

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    saved.dir, saved.dev_info, saved.spawn = state.dir, core.dev_info, core.spawn_server
    saved.delete, saved.forget, saved.dev_ids = core.delete, core.forget, core.dev_ids
    state.dir, devices, deleted = dir, {}, {}
    core.spawn_server = function() return nil, "no server in this spec", 1 end
    core.delete = function(id) deleted[#deleted + 1] = id; devices[id] = nil; return true end
    core.forget = function(id) os.remove(state.path(id)) end
    core.dev_ids = function()
      local ids = {}
      for id in pairs(devices) do ids[#ids + 1] = id end
      table.sort(ids)
      return ids
    end
    core.dev_info = function(id)
      if devices[id] then return devices[id] end
      return nil, "ENODEV: no such ublk device", 19
    end
  end)

  after_each(function()
    state.dir, core.dev_info, core.spawn_server = saved.dir, saved.dev_info, saved.spawn
    core.delete, core.forget, core.dev_ids = saved.delete, saved.forget, saved.dev_ids
    os.execute("rm -rf " .. dir)
  end)

  -- A record as the runtime writes it: the pid with its start time (a
  -- dead pid gets one no process has).
  local function record(id, t)
    t.id = id
    t.start = t.start or state.proc_start(t.pid) or 1
    assert(state.write(id, t))
  end

  local function write_raw(id, text)
    local f = assert(io.open(state.path(id), "w"))
    f:write(text)
    f:close()
  end

  it("takes over the siblings that still read LIVE once their server has died", function()
    local pid = dead_pid()
    record(3, { pid = pid, script = "/s.lua", index = 1 })
    record(4, { pid = pid, script = "/s.lua", index = 2, store = "/dev/shm/ublk-lua.x.2" })
    record(5, { pid = pid, script = "/s.lua", index = 3 })
    record(6, { pid = pid, script = "/s.lua", index = 4 })
    record(7, { pid = live_pid(), script = "/s.lua", index = 1 })
    devices[3] = info("QUIESCED", true)
    devices[4] = info("LIVE", true) -- the kernel has not seen the death yet
    devices[5] = info("DEAD", true) -- stopped: nothing to recover
    devices[6] = info("LIVE", false) -- no recovery: the kernel will stop it
    devices[7] = info("LIVE", true) -- another server's, which lives
    local what = assert(daemon.takeover(3))
    os.execute("kill -9 " .. state.read(7).pid)
    assert.are.same({ ["1"] = { id = 3 }, ["2"] = { id = 4, store = "/dev/shm/ublk-lua.x.2" } },
      what.takeover)
    assert.are.equal("/s.lua", what.script)
  end)

  it("takes over a device that still reads LIVE once its server has died", function()
    record(3, { pid = dead_pid(), spec = { backend = "memory" }, index = 1 })
    devices[3] = info("LIVE", true)
    local what = assert(daemon.takeover(3))
    assert.are.same({ ["1"] = { id = 3 } }, what.takeover)
    -- one `resize` changed: served at the size it has now, unless a
    -- script named for the recovery says otherwise (it must match)
    record(3, { pid = dead_pid(), spec = { backend = "memory" }, index = 1, resized = true })
    devices[3].size = 4 * MiB
    assert.are.same({ ["1"] = { id = 3, size = 4 * MiB } }, assert(daemon.takeover(3)).takeover)
    assert.are.same({ ["1"] = { id = 3 } }, assert(daemon.takeover(3, "/s.lua", {})).takeover)
  end)

  it("refuses to take over a LIVE device whose server lives", function()
    local pid = live_pid()
    record(3, { pid = pid, script = "/s.lua", index = 1 })
    devices[3] = info("LIVE", true)
    local what, err = daemon.takeover(3)
    os.execute("kill -9 " .. pid)
    assert.is_nil(what)
    assert.matches("device 3 is LIVE, served by pid " .. pid, err)
  end)

  it("refuses a reload, before signalling the server, when one of its devices has no recovery", function()
    local pid = live_pid()
    record(3, { pid = pid, script = "/s.lua", index = 1 })
    -- as state.record writes it: recovery = false, backend, sizes
    record(4, { pid = pid, script = "/s.lua", index = 2, recovery = false, backend = "memory",
      size = 33554432, queues = 1, depth = 128, args = {} })
    devices[3] = info("LIVE", true)
    devices[4] = info("LIVE", false)
    local said, status = stderr.capture(daemon.reload, { id = 3 })
    local lives = state.server_alive({ pid = pid, start = state.proc_start(pid) })
    os.execute("kill -9 " .. pid)
    assert.are.equal(1, status)
    assert.matches("device 4, served by the same server %(pid " .. pid .. "%) as device 3, was "
      .. "added with recovery = false: a reload hands over every device of its server, so each "
      .. "needs recovery on; nothing was reloaded", said)
    assert.is_true(lives, "the server was signalled")
    assert.is_nil(io.open(state.handover_path(3)))
  end)

  it("calls a device recoverable as the sweep does: recovery on, not DEAD, its server gone", function()
    local dead, live = { pid = dead_pid() }, { pid = live_pid() }
    assert.is_true(state.recoverable(info("LIVE", true), dead))
    assert.is_true(state.recoverable(info("QUIESCED", true), live))
    assert.is_true(state.recoverable(info("FAIL_IO", true), nil))
    assert.is_false(state.recoverable(info("LIVE", true), live))
    assert.is_false(state.recoverable(info("LIVE", true), nil))
    assert.is_false(state.recoverable(info("DEAD", true), dead))
    assert.is_false(state.recoverable(info("QUIESCED", false), dead))
    os.execute("kill -9 " .. live.pid)
  end)

  -- Pid reuse: a record whose pid now belongs to another process (here a
  -- `sleep` given the dead server's pid is played by a live process whose
  -- start time differs from the recorded one).
  it("never believes or signals a process that got a dead server's pid", function()
    local pid = live_pid()
    local stale = { pid = pid, start = state.proc_start(pid) - 1 }
    record(3, { pid = pid, start = stale.start, script = "/s.lua", index = 1 })
    devices[3] = info("LIVE", true)
    assert.is_false(state.server_alive(stale))
    assert.is_true(state.server_alive({ pid = pid, start = state.proc_start(pid) }))
    local ok, err = state.signal(stale, 15)
    assert.is_nil(ok)
    assert.matches("ESRCH: pid " .. pid .. " is no longer the recorded server", err)
    -- reload refuses, recover takes the device over, list calls it dead
    local said, status = stderr.capture(daemon.reload, { id = 3 })
    assert.are.equal(1, status)
    assert.matches("device 3 has no running ublk%-lua server to reload", said)
    assert.are.same({ ["1"] = { id = 3 } }, assert(daemon.takeover(3)).takeover)
    local listed = outputs(admin.list, {})
    assert.matches("dev id 3: LIVE.*pid " .. pid .. " %(dead%)", listed)
    -- del: the process is not signalled; the device is deleted once the
    -- kernel has released it (it is LIVE only until then: a few reads here)
    local reads, dev_info = 0, core.dev_info
    core.dev_info = function(id)
      reads = reads + 1
      if reads == 4 then devices[3].state = "DEAD" end
      return dev_info(id)
    end
    local _, _, dstatus = outputs(admin.del, { id = 3 })
    core.dev_info = dev_info
    local lives = state.server_alive({ pid = pid, start = state.proc_start(pid) })
    os.execute("kill -9 " .. pid)
    assert.are.equal(0, dstatus)
    assert.are.same({ 3 }, deleted)
    assert.is_true(lives, "the process that reused the pid was signalled")
  end)

  it("signals the recorded server through its pidfd, checked by its start time", function()
    local pid = live_pid()
    local rec = { pid = pid, start = state.proc_start(pid) }
    assert.is_true(state.signal(rec, 15))
    for _ = 1, 100 do
      if not state.server_alive(rec) then break end
      os.execute("sleep 0.02")
    end
    os.execute("kill -9 " .. pid .. " 2>/dev/null")
    assert.is_false(state.server_alive(rec))
  end)

  it("reads a record whole, however long its arguments", function()
    local args = { ("a"):rep(4200) }
    record(3, { pid = dead_pid(), script = "/s.lua", args = args, index = 1,
      store = "/dev/shm/ublk-lua.0123456789abcdef.1" })
    local st = assert(state.read(3))
    assert.are.same(args, st.args)
    assert.are.equal("/dev/shm/ublk-lua.0123456789abcdef.1", st.store)
  end)

  it("believes nothing of a record cut short, not JSON, or naming what is not ours", function()
    local bad = {
      { '{"id": 3, "pid": 1234, "start": 5, "store": "/dev/shm/ublk-lua.ab.1"', "not JSON" },
      { "garbage", "not JSON" },
      { '{"id": 4, "pid": 1234}', "its id is 4, not 3" },
      { '{"id": 3, "pid": -1}', "pid %-1 is not a process id" },
      { '{"id": 3, "pid": 1.5}', "pid 1.5 is not a process id" },
      { '{"id": 3, "pid": 12, "store": "/etc/passwd"}', "store /etc/passwd is not one of ublk%-lua's" },
      { '{"id": 3, "pid": 12, "store": "/dev/shm/ublk-lua.x/../../etc/passwd"}', "is not one of" },
      { '{"id": 3, "pid": 12, "shared": ["/home/x"]}', "shared region /home/x is not one of" },
      { '{"id": 3, "pid": 12, "size": "big"}', "size big is not a count" },
    }
    for _, b in ipairs(bad) do
      write_raw(3, b[1])
      local st, err = state.read(3)
      assert.is_nil(st, b[1])
      assert.matches(b[2], err, 1, false, b[1])
    end
  end)

  it("lists and removes a record that does not parse; del -a then succeeds", function()
    write_raw(3, '{"id": 3, "pid": 12')
    write_raw(5, "{}")
    devices[5] = info("QUIESCED", true)
    local out, said = outputs(admin.list, {})
    assert.matches("no device 3, and an unreadable record %(.*dev3: not JSON", said)
    assert.matches("dev id 5: QUIESCED.*unreadable record %(.*dev5: its id is nil, not 5%): "
      .. "ublk%-lua del %-n 5 removes it", out)
    local _, _, status = outputs(admin.del, { all = true })
    assert.are.equal(0, status)
    assert.is_nil(io.open(state.path(3)))
    assert.are.same({ 5 }, deleted)
    _, _, status = outputs(admin.del, { all = true })
    assert.are.equal(0, status, "del -a is clean the second time")
  end)

  it("leaves alone, and says so, a device the kernel keeps LIVE after its server has gone", function()
    local pid = live_pid()
    record(3, { pid = pid, start = state.proc_start(pid) - 1, script = "/s.lua", index = 1 })
    devices[3] = info("LIVE", false)
    devices[3].pid = pid -- the kernel names a process that does not hold /dev/ublkc3
    local settle = admin.settle_s
    admin.settle_s = 0.2
    local _, said, status = outputs(admin.del, { id = 3 })
    admin.settle_s = settle
    os.execute("kill -9 " .. pid)
    assert.are.equal(1, status)
    assert.are.same({}, deleted, "DEL_DEV would wait for good with the control mutex held")
    assert.matches("device 3 is still LIVE 0.2 s after its server %(pid " .. pid .. "%) ended: "
      .. "the kernel has not released it; not deleted", said)
  end)

  it("leaves alone a LIVE device whose record is cut short and whose server runs", function()
    local pid = live_pid()
    write_raw(3, ('{"id": 3, "pid": %d, "sta'):format(pid))
    devices[3] = info("LIVE", true)
    devices[3].pid = pid -- the kernel's server pid: alive, but it does not hold /dev/ublkc3
    local _, said, status = outputs(admin.del, { all = true })
    os.execute("kill -9 " .. pid)
    assert.are.equal(1, status)
    assert.are.same({}, deleted)
    assert.matches("device 3 is LIVE, served by pid " .. pid .. ".*left alone", said)
  end)

  it("refuses NaN and infinity in JSON, both ways", function()
    for _, v in ipairs({ 0 / 0, math.huge, -math.huge }) do
      local ok, err = pcall(json.encode, { n = v })
      assert.is_false(ok)
      assert.matches("cannot encode", err)
    end
    assert.is_nil(json.decode('{"n": 1e999}'))
    assert.is_nil(state.write(3, { id = 3, pid = 1, size = 0 / 0 }))
    assert.is_nil(io.open(state.path(3)))
  end)
end)

-- A serving process waits for a termination signal or a request (resize,
-- mark: ublk.requests): core.wait_signal(ms, fd) returns once the inotify
-- watch of requests.watch() sees a request renamed into the state directory.
describe("a server's wait for requests", function()
  local requests = require "ublk.requests"
  local libc = require "ublk.libc"
  local ffi = require "ffi"
  local saved, dir

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    saved, state.dir = state.dir, dir
  end)
  after_each(function()
    state.dir = saved
    os.execute("rm -rf " .. dir)
  end)

  it("wakes at a request written whole into the state directory, and sleeps again once drained", function()
    local fd = assert(requests.watch())
    assert.is_nil(core.wait_signal(0, fd)) -- nothing yet
    assert.is_true(state.write_file(dir .. "/dev7.resize", "1048576 keep\n"))
    local t0 = libc.clock()
    -- woken by the watch, not by the 3 s timeout (nor a signal)
    assert.is_nil(core.wait_signal(3000, fd))
    assert.is_true(libc.clock() - t0 < 2.5, "the request did not wake the wait")
    local p = ffi.new("struct ublk_pollfd[1]", { { fd = fd, events = 1 } })
    assert.are.equal(1, ffi.C.poll(p, 1, 0)) -- readable until drained
    requests.drain(fd)
    assert.are.equal(0, ffi.C.poll(p, 1, 0))
    ffi.C.close(fd)
  end)

  it("has no watch where the state directory does not exist (the server then looks every 200 ms)", function()
    state.dir = dir .. "/none"
    assert.is_nil(requests.watch())
  end)
end)
