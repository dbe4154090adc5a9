-- A RAM disk in Lua on a ublk.shared region, for reload_spec: with the
-- argument "extra" it makes one more region before its store, as an
-- edited script might, so that a server taking over its devices would map
-- the old store where it expects the new small region (refused by name).
local ublk = require "ublk"
local extra = ...
local counters = extra == "extra" and ublk.shared(4096) or nil
local store = ublk.shared("64MiB")

return { size = "64MiB", queues = 2, backend = ublk.backend{
  store = store, counters = counters,
  read = function(self, req) return req:copy(self.store.ptr + req.offset) end,
  write = function(self, req) return req:copy(self.store.ptr + req.offset) end,
} }
