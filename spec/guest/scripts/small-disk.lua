-- A 16 MiB RAM disk, two queues: for specs that start many servers at
-- once (eleven of examples/mydisk.lua's 256 MiB do not fit the guest's
-- /dev/shm).
return { size = "16MiB", queues = 2, depth = 128, backend = "memory" }
