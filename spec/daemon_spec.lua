-- What `ublk-lua recover`, `reload` and `list` decide from the records
-- (lua/ublk/state.lua) and what the kernel says of each device: records
-- in a directory of the spec's own, core.dev_info answered by the spec.
-- No kernel ublk needed, no server started.
local core = require "ublk.core"
local state = require "ublk.state"
local daemon = require "ublk.cli_daemon"
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
local function info(state_name, recovery)
  return { state = state_name, pid = -1, flags = { user_recovery = recovery or nil } }
end

describe("recover and reload, on records", function()
  local saved, devices, dir = {}, {}, nil

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    saved.dir, saved.dev_info, saved.spawn = state.dir, core.dev_info, core.spawn_server
    state.dir, devices = dir, {}
    core.spawn_server = function() return nil, "no server in this spec", 1 end
    core.dev_info = function(id)
      if devices[id] then return devices[id] end
      return nil, "ENODEV: no such ublk device", 19
    end
  end)

  after_each(function()
    state.dir, core.dev_info, core.spawn_server = saved.dir, saved.dev_info, saved.spawn
    os.execute("rm -rf " .. dir)
  end)

  local function record(id, t)
    t.id = id
    assert(state.write(id, t))
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
    record(4, { pid = pid, script = "/s.lua", index = 2 })
    devices[3] = info("LIVE", true)
    devices[4] = info("LIVE", false)
    local said, status = stderr.capture(daemon.reload, { id = 3 })
    local lives = state.alive(pid)
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
end)
