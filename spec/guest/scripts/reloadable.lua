-- A Lua backend over a file, for `ublk-lua reload`: VERSION names the code
-- (written to /tmp/ublk-reload-version when a server starts with it), FILE
-- holds the data, so a new server finds it.
local ublk = require "ublk"
local version, path = ...
local file = ublk.file{ path = path }

return { size = "64MiB", queues = 2, backend = ublk.backend{
  read = function(_, req) return file:read(req) end,
  write = function(_, req) return file:write(req) end,
  flush = function(_, req) return file:flush(req) end,
  on_start = function()
    local f = assert(io.open("/tmp/ublk-reload-version", "w"))
    f:write(version)
    f:close()
  end,
} }
