-- A RAM disk, read-only with argument "ro", else writable: for a recovery
-- by a server that serves it otherwise than it was made.
local mode = ...
return { size = "32MiB", read_only = mode == "ro" }
