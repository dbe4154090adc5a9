-- examples/cow.lua: a copy-on-write overlay.  Reads come from a base file,
-- opened read-only, until a sector is written; written sectors live in
-- memory.  The base file never changes.
-- Run: sudo build/ublk-lua examples/cow.lua BASE_FILE
local ublk = require "ublk"
local ffi = require "ffi"

local path = ...
if not path then error("usage: ublk-lua examples/cow.lua BASE_FILE", 0) end
local f = assert(io.open(path, "rb"))
local size = f:seek("end")
f:close()
size = size - size % 4096

local SECTOR = 512
local base = ublk.file { path = path, read_only = true }

local disk = ublk.backend {
  size = size,
  async = true, -- reads from the base file wait for its completion
  overlay = ublk.shared(size),         -- written sectors' data
  written = ublk.shared(size / SECTOR), -- one byte per sector: 1 = in overlay

  read = function(self, req)
    local n, err = base:read(req)
    if not n then return nil, err end
    local first, w = req.offset / SECTOR, self.written.ptr
    for i = 0, req.length / SECTOR - 1 do
      if w[first + i] ~= 0 then
        ffi.copy(req.buf + i * SECTOR, self.overlay.ptr + req.offset + i * SECTOR, SECTOR)
      end
    end
    return req.length
  end,

  write = function(self, req)
    ffi.copy(self.overlay.ptr + req.offset, req.buf, req.length)
    ffi.fill(self.written.ptr + req.offset / SECTOR, req.length / SECTOR, 1)
    return req.length
  end,
}

return { backend = disk, queues = 2 }
