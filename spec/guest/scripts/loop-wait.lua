-- A script that runs its own loop after starting its device, waiting for
-- the signal that ends it with ublk.wait_signal (spec/guest/shutdown_spec).
local ublk = require "ublk"
local dev = assert(ublk.device{ size = "8MiB" })
assert(dev:start())
print(dev.path .. " ready (loop)")
io.stdout:flush()
local n = 0
while not ublk.wait_signal(0.2) do
  n = n + dev:stats().total.reads
end
print("loop saw " .. ublk.wait_signal() .. " after " .. n)
