-- A Lua policy over an rbd delegate, for `reload` under a mounted ext4:
--   ublk-lua add spec/guest/scripts/rbd-policy.lua VERSION IMAGE CONF
-- It passes every request to the image (the data lives in the cluster, so
-- the next server finds it) and writes VERSION to /tmp/ublk-reload-version
-- when a server starts with it, so a spec sees which policy serves.
local ublk = require "ublk"
local version, image, conf = ...

return { queues = 2, backend = ublk.backend{
  async = true, -- each request waits for the image
  image = ublk.rbd{ image = image, conf = conf, osd_timeout = 10 },
  read = function(self, req) return self.image:read(req) end,
  write = function(self, req) return self.image:write(req) end,
  flush = function(self, req) return self.image:flush(req) end,
  discard = function(self, req) return self.image:discard(req) end,
  write_zeroes = function(self, req) return self.image:write_zeroes(req) end,
  on_start = function()
    local f = assert(io.open("/tmp/ublk-reload-version", "w"))
    f:write(version)
    f:close()
  end,
} }
