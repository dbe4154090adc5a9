-- Eight small RAM disks from one server, for concurrent-creation specs.
local t = {}
for i = 1, 8 do t[i] = { size = "8MiB", queues = 1, depth = 16, recovery = false } end
return t
