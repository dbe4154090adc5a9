-- A RAM disk its server's death removes (the kernel marks it DEAD).
return { size = "64MiB", recovery = false }
