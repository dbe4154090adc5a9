-- Two RAM disks from one server, recovery on (the kernel's default mode):
-- a server whose devices are recovered together.
return { { size = "32MiB" }, { size = "32MiB" } }
