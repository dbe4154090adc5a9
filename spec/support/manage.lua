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
