-- spec/support/manage.lua: driving the CLI in guest specs (manage_spec,
-- recovery_spec): `ublk-lua add/list/del/...` as a user types them, and
-- what a clean guest looks like afterwards.
local G = require "guest"
local json = require "ublk.json"
local assert = require "luassert" -- busted's assert lives only in spec files

local M = {}

-- `ublk-lua ARGS` -> its exit status, its output, whether it succeeded
function M.cli(fmt, ...)
  local ok, out, rc = G.sh(G.bin .. " " .. fmt, ...)
  return rc, out, ok
end

-- `add ...` -> id, pid, the "dev id" line; raises unless it succeeded.
function M.add(args)
  local rc, out = M.cli("add %s", args)
  assert.are.equal(0, rc, out)
  local id, pid = out:match("dev id (%d+): /dev/ublkb%d+ .-, pid (%d+)")
  assert.truthy(id, out)
  return tonumber(id), tonumber(pid), out
end

-- `list -n ID --json`: the device's row
function M.listed(id)
  local rc, out = M.cli("list -n %d --json", id)
  assert.are.equal(0, rc, out)
  local rows = assert(json.decode(out), out)
  return rows[1]
end

function M.alive(pid) return G.sh("kill -0 %d", pid) end

-- Polls cond every 50 ms for up to secs (20) seconds: whether it came true.
function M.wait_until(cond, secs)
  for _ = 1, (secs or 20) * 20 do
    if cond() then return true end
    G.sh("sleep 0.05")
  end
  return false
end

-- A writer with crc32c verify on `path` in the background (2 jobs of
-- size_mib each, offset_mib apart, paced at `rate` IOPS so that a kill
-- lands mid-run): its process (G.spawn).
function M.verify_writer(path, size_mib, offset_mib, rate)
  return G.spawn(("fio --name=v --filename=%s --ioengine=libaio --direct=1 --rw=randwrite "
    .. "--bs=4k --iodepth=16 --numjobs=2 --size=%dM --offset_increment=%dM --rate_iops=%d "
    .. "--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 --group_reporting")
    :format(path, size_mib, offset_mib, rate), true)
end

-- kill -9 device id's server `pid`, then wait up to secs for another server
-- (add --restart's supervisor) to serve it: the seconds that took.
function M.kill_until_restarted(id, pid, secs)
  local t0 = G.now()
  G.must("kill -9 %d", pid)
  assert.truthy(M.wait_until(function()
    local d = M.listed(id)
    return d.state == "LIVE" and d.ublk_lua and d.ublk_lua.pid ~= pid and d.ublk_lua.server == "running"
  end, secs), "not recovered")
  return G.now() - t0
end

-- `del -n ID` succeeds and its server `pid` is gone after.
function M.del_until_gone(id, pid)
  local rc, out = M.cli("del -n %d", id)
  assert.are.equal(0, rc, out)
  assert.truthy(M.wait_until(function() return not M.alive(pid) end), "server still running")
  return out
end

-- Nothing of ublk-lua's left: no device, no record, no store.
function M.clean()
  assert.are.same({}, G.leftovers())
  assert.are.equal("", select(2, G.sh("ls /run/ublk-lua 2>/dev/null | grep -v server.log")))
  assert.are.equal("", select(2, G.sh("ls /dev/shm | grep ublk-lua")))
end

-- after_each: whatever a spec left (mounts, devices, servers) goes
function M.reset()
  G.sh("umount /tmp/ublk-reload 2>/dev/null; umount /tmp/ublk-safe 2>/dev/null")
  G.sh("%s del -a", G.bin)
  G.sh("pkill -9 -f '[u]blk-lua --supervise'; pkill -9 -f '[u]blk-lua --serve'")
  M.wait_until(function() return #G.leftovers() == 0 end, 10)
end

return M
