-- examples/null.lua: a disk that completes every request at once and stores
-- nothing, like the kernel's null_blk.  Measures ublk's own overhead.
-- Run: sudo build/ublk-lua examples/null.lua
return { size = "1GiB", queues = 2, backend = "null" }
