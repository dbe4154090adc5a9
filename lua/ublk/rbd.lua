-- ublk.rbd: everything Lua knows of the rbd backend (runtime/backends/backend_rbd.c),
-- in one place: its options, their checks, and the strings the runtime gets.
--
--   ublk.rbd{ image = "pool/[namespace/]name[@snap]", conf = PATH, id = CLIENT,
--             exclusive = bool, read_only = bool, osd_timeout = SECONDS, size = ... }
--   { backend = "rbd", image = ..., conf = ..., client = ..., exclusive = ...,
--     osd_timeout = ... }     -- a device's own fields ('id' is the device number
--                             -- there, so the client is 'client')
local M = {}

local format = string.format

local function show(v)
  if type(v) == "string" then return format("%q", v) end
  return tostring(v)
end

-- the options of ublk.rbd{}
M.options = { image = true, conf = true, id = true, exclusive = true, read_only = true,
  osd_timeout = true, size = true }
-- a device's own fields, with what they are called in ublk.rbd{}
M.device_fields = { image = "image", conf = "conf", client = "id", exclusive = "exclusive",
  osd_timeout = "osd_timeout" }

-- check(t) -> true | nil, message, for ublk.rbd{} options (names as there).
function M.check(t)
  local image = t.image
  if type(image) ~= "string" or not (image:match("^[^/@]+/[^/@]+$")
      or image:match("^[^/@]+/[^/@]+/[^/@]+$") or image:match("^[^/@]+/[^/@]+@[^/@]+$")
      or image:match("^[^/@]+/[^/@]+/[^/@]+@[^/@]+$")) then
    return nil, format('image = %s: must be "pool/name", "pool/namespace/name", with'
      .. ' "@snap" for a snapshot', show(image))
  end
  for _, k in ipairs({ "conf", "id" }) do
    local v = t[k]
    if v ~= nil and (type(v) ~= "string" or v == "") then
      return nil, format("%s = %s: must be a non-empty string", k, show(v))
    end
  end
  if t.exclusive ~= nil and type(t.exclusive) ~= "boolean" then
    return nil, format("exclusive = %s: must be true or false", show(t.exclusive))
  end
  local s = t.osd_timeout
  -- whole seconds: Ceph's timeouts are (its parser refuses "2.5")
  if s ~= nil and (type(s) ~= "number" or s % 1 ~= 0 or s < 1 or s > 86400) then
    return nil, format("osd_timeout = %s: must be whole seconds from 1 to 86400", show(s))
  end
  if image:match("@") and t.read_only ~= true then
    return nil, format("image = %s is a snapshot, read-only: set read_only = true", show(image))
  end
  return true
end

-- The runtime's string options, from a ublk.rbd{} object b and a device's
-- validated fields p (b's win).
function M.c_opts(b, p)
  p = p or {}
  local function pick(k, dk)
    local v = b[k]
    if v == nil then v = p[dk or k] end
    return v
  end
  local exclusive, timeout = pick("exclusive"), pick("osd_timeout")
  return { image = pick("image"), conf = pick("conf"), id = pick("id", "client"),
    exclusive = exclusive and "1" or nil,
    osd_timeout = timeout and format("%d", timeout) or nil }
end

return M
