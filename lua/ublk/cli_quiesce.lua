-- ublk.cli_quiesce: `ublk-lua quiesce -n ID`: the server of device ID
-- leaves its devices QUIESCED, their I/O waiting, for a later `recover`
-- (an operator pausing a server; the kernel's quiesce-then-recover test).
-- The server hands over as it does for `reload` (cli.lua: handover):
-- QUIESCE_DEV where the kernel has UBLK_F_QUIESCE (6.16+) lets the I/O in
-- flight finish first; a kernel without it (6.12) quiesces the device when
-- the server has gone, as after a crash, and only recovery = "reissue"
-- serves the I/O that was in flight again: with anything else it would
-- fail, so that is refused.
local core = require "ublk.core"
local state = require "ublk.state"

local quiesce = {}

local cli_out = require "ublk.cli_out"
local out, complain = cli_out.out, cli_out.complain

local wait_for = require("ublk.libc").wait_until

-- Why device id (info: core.dev_info) cannot wait QUIESCED without a
-- server, or nil
local function refusal(id, info)
  local f = info.flags
  if not f.user_recovery then
    return ("device %d was added with recovery = false: without its server the kernel "
      .. "would remove it (DEAD), so it cannot be quiesced"):format(id)
  end
  if f.user_recovery_fail_io then
    return ("device %d has recovery = \"fail\": without its server its I/O fails (FAIL_IO) "
      .. "instead of waiting QUIESCED; a device made with recovery = \"reissue\" or "
      .. "\"queue\" can be quiesced"):format(id)
  end
  if not f.quiesce and not f.user_recovery_reissue then
    return ("device %d: quiesce needs UBLK_F_QUIESCE (Linux 6.16+), which this kernel "
      .. "lacks; here the device is quiesced by its server leaving, as a crash would, and "
      .. "only recovery = \"reissue\" serves the I/O then in flight again (this device has "
      .. "recovery = \"queue\": it would fail)"):format(id)
  end
end

function quiesce.run(o)
  local info, err = core.dev_info(o.id)
  if not info then complain(("device %d: %s"):format(o.id, err)) return 1 end
  if info.state == "QUIESCED" then
    out("dev id %d: already QUIESCED: ublk-lua recover -n %d resumes it", o.id, o.id)
    return 0
  end
  if info.state ~= "LIVE" then
    complain(("device %d is %s: only a LIVE device can be quiesced"):format(o.id, info.state))
    return 1
  end
  local st = state.read(o.id)
  if not (st and state.server_alive(st)) then
    complain(("device %d has no running ublk-lua server: only one can be asked to leave it "
      .. "QUIESCED"):format(o.id))
    return 1
  end
  -- the server leaves all its devices: each must be able to wait
  local daemon = require "ublk.cli_daemon"
  local ids, why = daemon.check_siblings(st, function(id, i)
    local w = refusal(id, i or info)
    if w and id ~= o.id then
      w = ("%s; it has the same server (pid %d) as device %d, which leaves all its "
        .. "devices together"):format(w, st.pid, o.id)
    end
    return w
  end)
  if not ids then complain(why .. "; nothing was quiesced") return 1 end
  local t0 = core.clock()
  local gone, serr = daemon.hand_over(st, ids, 15)
  if gone == nil then
    complain(("device %d: its server (pid %d) could not be asked to leave: %s"):format(o.id,
      st.pid, serr))
    return 1
  end
  if not gone then
    complain(("device %d: its server (pid %d) did not leave in 15 s; it serves on"):format(
      o.id, st.pid))
    return 1
  end
  -- without QUIESCE_DEV the kernel quiesces once the server's /dev/ublkcN
  -- is closed, a moment after it has gone
  local status = 0
  for _, id in ipairs(ids) do
    local now
    wait_for(function()
      now = core.dev_info(id)
      return not now or now.state ~= "LIVE"
    end, 10)
    if now and now.state == "QUIESCED" then
      out("dev id %d: QUIESCED in %.0f ms, its I/O waits (server pid %d left%s): ublk-lua "
        .. "recover -n %d resumes it", id, (core.clock() - t0) * 1000, st.pid,
        now.flags.quiesce and "" or ", as a crash would: this kernel has no QUIESCE_DEV; "
          .. "the I/O it had in flight is reissued", id)
    else
      complain(("device %d: %s after its server left, not QUIESCED"):format(id,
        now and now.state or "gone"))
      status = 1
    end
  end
  return status
end

return quiesce
