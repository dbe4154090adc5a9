-- A script that starts its device and then calls os.exit (spec/guest/shutdown_spec).
local ublk = require "ublk"
local dev = assert(ublk.device{ size = "8MiB" })
assert(dev:start())
os.exit(3)
