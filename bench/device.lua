-- bench/device.lua: a C-backend device for the benchmark, one per process
-- so that each one's CPU time can be read from /proc.
-- Run: ublk-lua bench/device.lua BACKEND [PATH|URI|IMAGE|-] [pinned|batch|poll=US|nolatency|norecovery|copy=MODE|conf=PATH ...]
--   pinned      queue threads pinned to the CPUs the kernel maps to them
--               (pin = true; the default lets the scheduler place them)
--   unpinned    pin = false: the scheduler places the queue threads
--   autopin     pin = "auto" (the default): pinned while requests come
--               one at a time
--   batch       batch = true: array commands instead of one per request (7.x)
--   poll=US     poll_us = US: spin that long before a queue thread sleeps
--   nolatency   no latency histograms (what they cost: ublk-lua stats)
--   norecovery  recovery = false: the memory backend in anonymous memory
--               rather than its /dev/shm store (what recovery costs)
--   copy=MODE   how data moves (docs/tuning.md): memory inline|ring|buffer,
--               file buffer|auto_reg|register
--   conf=PATH   rbd: the cluster's ceph.conf (BACKEND rbd, IMAGE pool/name)
--   queues=N    rbd: N queues, so N image handles (2 unless given)
local backend, path = ...
if path == "-" then path = nil end
local flags = {}
local copy, poll, conf, queues
for i = 3, select("#", ...) do
  local f = select(i, ...)
  copy = f:match("^copy=(.+)") or copy
  conf = f:match("^conf=(.+)") or conf
  queues = tonumber(f:match("^queues=(%d+)$")) or queues
  poll = tonumber(f:match("^poll=(%d+)$")) or poll
  flags[f] = true
end
local recovery
if flags.norecovery then recovery = false end
if backend == "nbd" then
  return { queues = 2, depth = 128, backend = "nbd", uri = path,
    pin = flags.pinned or not flags.unpinned and nil }
end
if backend == "rbd" then -- its size is the image's
  return { queues = queues or 2, depth = 128, backend = "rbd", image = path, conf = conf,
    pin = flags.pinned or nil }
end
-- recovery: nil is the default ("reissue" where the kernel has it)
return { size = "256MiB", queues = 2, depth = 128, backend = backend, path = path,
  pin = flags.pinned or flags.autopin and "auto" or not flags.unpinned and nil, latency = not flags.nolatency,
  recovery = recovery, copy = copy, poll_us = poll, batch = flags.batch or nil }
