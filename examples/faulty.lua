-- examples/faulty.lua: a disk with bad sectors, for testing how software
-- copes with I/O errors.  Requests that touch a listed sector fail with EIO;
-- RATE makes that fraction of all other requests fail too.
-- Run: sudo build/ublk-lua examples/faulty.lua [SECTORS] [RATE]
--      e.g. examples/faulty.lua 1000,2048 0.01
local ublk = require "ublk"

local sectors, rate = ...
local bad = {}
for s in (sectors or ""):gmatch("%d+") do bad[#bad + 1] = tonumber(s) end
rate = tonumber(rate) or 0

local base = ublk.memory()

local function fails(req)
  local first = req.offset / 512
  local last = first + req.length / 512 - 1
  for _, s in ipairs(bad) do
    if s >= first and s <= last then return true end
  end
  return rate > 0 and math.random() < rate
end

local disk = ublk.backend {
  size = "64MiB",
  open = function(self, q) math.randomseed(q.id + 1) end, -- each queue its own stream
  read = function(self, req)
    if fails(req) then return nil, "EIO" end
    return base:read(req)
  end,
  write = function(self, req)
    if fails(req) then return nil, "EIO" end
    return base:write(req)
  end,
}

return { backend = disk, queues = 2 }
