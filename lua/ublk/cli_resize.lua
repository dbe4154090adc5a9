-- ublk.cli_resize: `ublk-lua resize -n ID SIZE [--force]`, both halves.
-- The backend lives in the server, so the server resizes: the CLI asks it
-- through ublk.requests (devN.resize: bytes and force), and it runs
-- dev:resize and answers.
local core = require "ublk.core"
local params = require "ublk.params"
local requests = require "ublk.requests"
local state = require "ublk.state"

local resize = {}

local cli_out = require "ublk.cli_out"
local out, complain = cli_out.out, cli_out.complain

-- The server's half (ublk.requests): "BYTES force|keep" -> the new size.
function resize.serve(dev, req)
  local bytes, force = req:match("^(%d+) (%a+)$")
  if not bytes then return nil, "EINVAL: unreadable resize request" end
  if dev:state() ~= "started" then return nil, "EINVAL: the device is " .. dev:state() end
  local ok, err = dev:resize(tonumber(bytes), force == "force")
  if not ok then return nil, err end
  -- a recovery by the recorded script serves the new size
  -- (cli_daemon.lua: takeover)
  state.record(dev, { resized = true })
  return tostring(dev:info().size)
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
  if info.state ~= "LIVE" then
    complain(("device %d is %s: its server resizes it once it serves"):format(o.id, info.state))
    return 1
  end
  local now, aerr = requests.ask(o.id, "resize", ("%d %s"):format(bytes,
    o.force and "force" or "keep"), state.read(o.id))
  if not now then complain(aerr) return 1 end
  out("dev id %d: resized from %s to %s", o.id, params.format_size(info.size),
    params.format_size(tonumber(now)))
  return 0
end

return resize
