-- examples/xor.lua: a toy "encrypted" disk.  A Lua backend scrambles every
-- byte with a key while a C backend stores them: Lua spends time only on
-- the XOR; the copy into the store stays in C.
-- Run: sudo build/ublk-lua examples/xor.lua [STORE_FILE]
-- With STORE_FILE the scrambled bytes go to that file (see them with xxd),
-- otherwise to the C memory backend.
local ublk = require "ublk"
local ffi = require "ffi"
local bit = require "bit"

local store = ...
local key = 0x5a
local base = store and ublk.file{ path = store, size = "128MiB", create = true } or ublk.memory()

-- XOR 8 bytes at a time; requests are whole 512-byte sectors.
local key64 = ffi.new("uint64_t", 0x0101010101010101ULL * key)
local function scramble(buf, len)
  local p = ffi.cast("uint64_t *", buf)
  for i = 0, len / 8 - 1 do p[i] = bit.bxor(p[i], key64) end
end

local disk = ublk.backend {
  size = "128MiB",
  async = store ~= nil, -- a file delegate completes later: wait for it
  read = function(self, req)
    local n, err = base:read(req)
    if not n then return nil, err end
    scramble(req.buf, req.length)
    return n
  end,
  write = function(self, req)
    scramble(req.buf, req.length) -- the buffer is ours: scramble in place
    return base:write(req)
  end,
}

return { backend = disk, queues = 2 }
