-- bench/device.lua: a C-backend device for the benchmark, one per process
-- so that each one's CPU time can be read from /proc.
-- Run: ublk-lua bench/device.lua BACKEND [PATH]
local backend, path = ...
return { size = "256MiB", queues = 2, depth = 128, backend = backend, path = path }
