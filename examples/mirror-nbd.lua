-- examples/mirror-nbd.lua: RAID-1 across two NBD servers.  Writes, flushes
-- and discards go to both; reads come from the first healthy one and fail
-- over to the other when it errors.  A side that fails is left out from
-- then on (on that queue), so a dead server costs one failed attempt, not
-- one per request; the disk fails only when both do.
-- Run: sudo build/ublk-lua examples/mirror-nbd.lua URI1 URI2 [SIZE]
--      e.g. nbd://10.0.0.1/disk nbd+unix:///?socket=/tmp/nbd.sock 1GiB
-- Without SIZE the disk is as large as the smaller export (a backend
-- without a size takes its delegates' smallest); a SIZE that does not fit
-- in both is refused at start, with the URI of the export too small.
local ublk = require "ublk"

local uri1, uri2, size = ...
if not uri1 or not uri2 then
  error("usage: ublk-lua examples/mirror-nbd.lua URI1 URI2 [SIZE]", 0)
end

local disk = ublk.backend {
  size = size, -- nil: the smaller export's
  async = true, -- each side's completion is waited for
  sides = { ublk.nbd { uri = uri1 }, ublk.nbd { uri = uri2 } },

  open = function(self) self.healthy = { true, true } end,

  read = function(self, req)
    local err
    for i, side in ipairs(self.sides) do
      if self.healthy[i] then
        local n, e = side:read(req)
        if n then return n end
        self.healthy[i], err = false, e
      end
    end
    return nil, err or "EIO"
  end,

  -- fn(side) on every healthy side; done if any succeeded
  each = function(self, fn)
    local done, err
    for i, side in ipairs(self.sides) do
      if self.healthy[i] then
        local n, e = fn(side)
        if n then done = n else self.healthy[i], err = false, e end
      end
    end
    if done then return done end
    return nil, err or "EIO"
  end,

  write = function(self, req)
    return self:each(function(side) return side:write(req) end)
  end,
  flush = function(self, req)
    return self:each(function(side) return side:flush(req) end)
  end,
  discard = function(self, req)
    return self:each(function(side) return side:discard(req) end)
  end,
}

return { backend = disk, queues = 2 }
