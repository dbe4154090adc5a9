-- A Lua backend whose read handler never returns for offset 1 MiB (not 0,
-- which the kernel's partition scan reads while the device starts): MODE
-- "call" loops calling a C function (a hook can stop it), "jit" loops in
-- machine code LuaJIT compiled (nothing can).  TIMEOUT is its budget in
-- seconds.  (spec/guest/shutdown_spec)
local ublk = require "ublk"
local ffi = require "ffi"
local mode, timeout = ...
local mem = ublk.shared("8MiB")
local disk = ublk.backend {
  size = "8MiB", timeout = tonumber(timeout) or 1,
  read = function(self, req)
    if req.offset == 2^20 then
      if mode == "jit" then
        local x = 0
        while true do x = x + 1 end
      end
      while true do os.clock() end
    end
    ffi.copy(req.buf, mem.ptr + req.offset, req.length)
  end,
  write = function(self, req) ffi.copy(mem.ptr + req.offset, req.buf, req.length) end,
}
return { backend = disk }
