-- bench/device.lua: a C-backend device for the benchmark, one per process
-- so that each one's CPU time can be read from /proc.
-- Run: ublk-lua bench/device.lua BACKEND [PATH|URI|-] [unpinned]
local backend, path, pin = ...
if path == "-" then path = nil end
if backend == "nbd" then
  return { queues = 2, depth = 128, backend = "nbd", uri = path, pin = pin ~= "unpinned" }
end
return { size = "256MiB", queues = 2, depth = 128, backend = backend, path = path,
  pin = pin ~= "unpinned" }
