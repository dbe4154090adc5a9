-- Two RAM disks from one server, the second without recovery: a server
-- that cannot hand over all of its devices (reload refuses it).
return { { size = "32MiB" }, { size = "32MiB", recovery = false } }
