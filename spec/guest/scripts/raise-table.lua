-- A script that starts its device and then raises a table (spec/guest/shutdown_spec).
local ublk = require "ublk"
local dev = assert(ublk.device{ size = "8MiB" })
assert(dev:start())
error({ message = "a table with a message" })
