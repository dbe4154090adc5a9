-- A script that never waits: its loop calls functions, so a termination
-- signal interrupts it (spec/guest/shutdown_spec).
local ublk = require "ublk"
local dev = assert(ublk.device{ size = "8MiB" })
assert(dev:start())
print(dev.path .. " ready (busy)")
io.stdout:flush()
local t = 0
while true do t = t + os.clock() end
