-- examples/mydisk.lua: a 256 MiB RAM disk with two queues.
-- Run: sudo build/ublk-lua examples/mydisk.lua   (Ctrl-C removes it)
-- A script returns the parameters of the device it wants; see README.md.
return { size = "256MiB", queues = 2, depth = 128, backend = "memory" }
