-- examples/sparse.lua: a thin-provisioned disk whose blocks live in memory
-- that Lua manages: a block takes memory only once written, reads of
-- unwritten blocks return zeroes, and discard gives blocks back.
-- Run: sudo build/ublk-lua examples/sparse.lua [SIZE]
local ublk = require "ublk"
local ffi = require "ffi"

local size = ublk.params.parse_size((...) or "256MiB")
local BLOCK = 4096

-- The arena's pages appear when first written (the kernel's lazy
-- allocation) and madvise gives them back; `used` has one byte per block,
-- so two queues never write the same byte for different blocks.
local disk = ublk.backend {
  size = size,
  arena = ublk.shared(size),
  used = ublk.shared(size / BLOCK),

  open = function(self)
    pcall(ffi.cdef, "int madvise(void *addr, size_t len, int advice);")
  end,

  read = function(self, req)
    local off, done = req.offset, 0
    while done < req.length do
      local b = math.floor(off / BLOCK)
      local n = math.min(BLOCK - off % BLOCK, req.length - done)
      if self.used.ptr[b] ~= 0 then
        ffi.copy(req.buf + done, self.arena.ptr + off, n)
      else
        ffi.fill(req.buf + done, n, 0)
      end
      off, done = off + n, done + n
    end
  end,

  write = function(self, req)
    ffi.copy(self.arena.ptr + req.offset, req.buf, req.length)
    local first = math.floor(req.offset / BLOCK)
    local last = math.floor((req.offset + req.length - 1) / BLOCK)
    ffi.fill(self.used.ptr + first, last - first + 1, 1)
  end,

  discard = function(self, req)
    local off, stop = req.offset, req.offset + req.length
    local first = math.ceil(off / BLOCK) * BLOCK -- whole blocks go back
    local last = math.floor(stop / BLOCK) * BLOCK
    if first >= last then
      ffi.fill(self.arena.ptr + off, req.length, 0)
      return
    end
    ffi.fill(self.arena.ptr + off, first - off, 0)
    ffi.fill(self.arena.ptr + last, stop - last, 0)
    ffi.fill(self.used.ptr + first / BLOCK, (last - first) / BLOCK, 0)
    ffi.C.madvise(self.arena.ptr + first, last - first, 4) -- MADV_DONTNEED
  end,
}
disk.spec.write_zeroes = disk.spec.discard

-- How many blocks hold data: for the script (or a spec) that made the disk.
function disk.provisioned()
  local n, used = 0, disk.spec.used
  for i = 0, used.size - 1 do n = n + used.ptr[i] end
  return n
end

return { backend = disk, queues = 2 }
