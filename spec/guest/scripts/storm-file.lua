-- A file-backed disk for the kill storm (storm_spec): FILE [COPY [RECOVERY]].
-- COPY is the file backend's copy mode ("auto_reg" where the kernel has
-- UBLK_F_AUTO_BUF_REG; "-" for the default), RECOVERY "false" for none.
local path, copy, recovery = ...
return { backend = "file", path = path, size = "256MiB", create = true,
         copy = copy ~= "-" and copy or nil,
         recovery = recovery ~= "false" and "reissue" or false,
         queues = 2, depth = 128 }
