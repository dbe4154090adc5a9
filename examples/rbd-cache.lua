-- examples/rbd-cache.lua: a local read cache in front of a Ceph RBD image.
-- A read whose every 4 KiB block is in the cache is served from memory;
-- any other goes to the image and leaves its blocks in the cache.  Writes,
-- discards and write-zeroes go to the image (write-through) and drop the
-- blocks they touch first, so the cache never holds what the image no
-- longer has.  Hits, misses and cached blocks show in `ublk-lua stats`,
-- dev:stats() and /metrics (the backend's counters).
-- Run: sudo build/ublk-lua examples/rbd-cache.lua POOL/IMAGE [CACHE_SIZE] [CEPH_CONF]
--      e.g. rbd/disk 256MiB /etc/ceph/ceph.conf (CACHE_SIZE 64MiB unless given)
--
-- The cache is direct-mapped: block b lives in slot b % SLOTS, its data in
-- one ublk.shared region and its tag (b + 1, 0 for none) in another.  One
-- queue: a read that missed fills the cache after it waited for the image,
-- and a write that came meanwhile must stop it; one queue's handlers are
-- one thread, so a per-slot count of writes is enough, where several
-- queues would need atomics across threads.
local ublk = require "ublk"
local ffi = require "ffi"

local image, cache_size, conf = ...
if not image then
  error("usage: ublk-lua examples/rbd-cache.lua POOL/IMAGE [CACHE_SIZE] [CEPH_CONF]", 0)
end
local BLOCK = 4096
local bytes = assert(ublk.params.parse_size(cache_size or "64MiB"))
local SLOTS = math.floor(bytes / BLOCK)
if SLOTS < 1 then error("CACHE_SIZE: at least 4KiB", 0) end

local disk = ublk.backend {
  -- no size: the image's
  async = true, -- each request waits for the image
  counters = { hits = "counter", misses = "counter", cached_blocks = "gauge" },
  image = ublk.rbd { image = image, conf = conf },
  data = ublk.shared(SLOTS * BLOCK),
  tags = ublk.shared(SLOTS * 8),

  open = function(self)
    self.tag = ffi.cast("uint64_t *", self.tags.ptr)
    self.writing = {} -- slot -> writes in flight over it
    self.written = {} -- slot -> writes started over it, ever
    -- a recovered server finds the cache its predecessor left (the
    -- ublk.shared regions outlive it): count what is there
    local n = 0
    for s = 0, SLOTS - 1 do
      if self.tag[s] ~= 0 then n = n + 1 end
    end
    self.counters.cached_blocks = n
  end,

  read = function(self, req)
    local c, tag, first, n = self.counters, self.tag, req.offset / BLOCK, req.length / BLOCK
    local hit = true
    for b = first, first + n - 1 do
      if tag[b % SLOTS] ~= b + 1 then hit = false break end
    end
    if hit then
      for i = 0, n - 1 do
        ffi.copy(req.buf + i * BLOCK, self.data.ptr + (first + i) % SLOTS * BLOCK, BLOCK)
      end
      c.hits = c.hits + 1
      return req.length
    end
    c.misses = c.misses + 1
    -- what this read may fill: slots no write is over now and none starts
    -- over while the image answers
    local before = {}
    for i = 0, n - 1 do
      local s = (first + i) % SLOTS
      before[i] = not self.writing[s] and (self.written[s] or 0)
    end
    local got, err = self.image:read(req) -- into req.buf
    if not got then return nil, err end
    for i = 0, n - 1 do
      local s = (first + i) % SLOTS
      if before[i] and before[i] == (self.written[s] or 0) and not self.writing[s] then
        -- untagged while its bytes change: a server that dies in the copy
        -- leaves an empty slot to the next one, never a torn block
        if tag[s] == 0 then c.cached_blocks = c.cached_blocks + 1 end
        tag[s] = 0
        ffi.copy(self.data.ptr + s * BLOCK, req.buf + i * BLOCK, BLOCK)
        tag[s] = first + i + 1
      end
    end
    return got
  end,

  -- op(req) on the image, with the blocks it touches dropped first and
  -- kept out of the cache until it is done
  through = function(self, req, op)
    local c, tag, first, n = self.counters, self.tag, req.offset / BLOCK, req.length / BLOCK
    for i = 0, n - 1 do
      local s = (first + i) % SLOTS
      self.writing[s] = (self.writing[s] or 0) + 1
      self.written[s] = (self.written[s] or 0) + 1
      if tag[s] ~= 0 then tag[s], c.cached_blocks = 0, c.cached_blocks - 1 end
    end
    local got, err = self.image[op](self.image, req)
    for i = 0, n - 1 do
      local s = (first + i) % SLOTS
      self.writing[s] = self.writing[s] > 1 and self.writing[s] - 1 or nil
    end
    if not got then return nil, err end
    return got
  end,
  write = function(self, req) return self:through(req, "write") end,
  discard = function(self, req) return self:through(req, "discard") end,
  write_zeroes = function(self, req) return self:through(req, "write_zeroes") end,
  flush = function(self, req) return self.image:flush(req) end,
}

-- 4 KiB blocks: every request is whole cache blocks
return { backend = disk, queues = 1, block_size = BLOCK }
