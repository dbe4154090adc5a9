-- examples/file.lua: serve a file (or a block device) as a ublk disk.
-- Run: sudo build/ublk-lua examples/file.lua disk.img [size]
-- Without a size, the file's own length is used; with one, a missing file
-- is created and a short one is grown.  Arguments reach the script as `...`.
local path, size = ...
if not path then error("usage: ublk-lua examples/file.lua FILE [SIZE]", 0) end
return { backend = "file", path = path, size = size, create = size ~= nil, queues = 2 }
