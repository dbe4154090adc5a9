-- Two RAM disks from one server, recovery on (the kernel's default mode):
-- a server whose devices are recovered together.  SIZE2 (default 32MiB)
-- sizes the second: another size makes its recovery fail.
local size2 = ...
return { { size = "32MiB" }, { size = size2 or "32MiB" } }
