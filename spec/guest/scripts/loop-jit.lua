-- A script stuck in a loop LuaJIT compiles to machine code with no calls:
-- no hook can interrupt it, so the stop deadline removes its devices
-- (spec/guest/shutdown_spec).
local ublk = require "ublk"
local dev = assert(ublk.device{ size = "8MiB" })
assert(dev:start())
print(dev.path .. " ready (jit)")
io.stdout:flush()
local x = 0
while true do x = x + 1 end
