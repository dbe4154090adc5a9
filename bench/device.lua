-- bench/device.lua: a C-backend device for the benchmark, one per process
-- so that each one's CPU time can be read from /proc.
-- Run: ublk-lua bench/device.lua BACKEND [PATH|-] [unpinned]
local backend, path, pin = ...
if path == "-" then path = nil end
return { size = "256MiB", queues = 2, depth = 128, backend = backend, path = path,
  pin = pin ~= "unpinned" }
