-- ublk.host: a backend served on this machine without the kernel's ublk
-- driver, for testing backends (Lua or C) with busted anywhere io_uring
-- works.  Each request goes through the runtime's real path: a queue with
-- a real io_uring, the backend's handlers in their own queue lua_State,
-- delegates, async waits; only the kernel's side is played by this module.
--
--   local host = require "ublk.host"
--   local q = assert(host.queue(my_backend, { size = "1MiB" }))
--   assert(q:write(4096, ("x"):rep(4096)))
--   assert.are.equal(("x"):rep(4096), q:read(4096, 4096))
--   q:close()
local ffi = require "ffi"
local core = require "ublk.core"
local params = require "ublk.params"
local backend = require "ublk.backend"
local options = require "ublk.options"

local M = {}

local Queue = {}
Queue.__index = Queue

local OPS = core.ops

-- queue(b, t) -> queue | nil, "ENAME: message", errno.  b: a backend
-- object or name; t: size, depth (4), max_io, block_size, read_only, path,
-- direct, as for ublk.device.  Bad parameters raise, as there.
function M.queue(b, t)
  t = t or {}
  local depth = t.depth or 4
  local dev = {}
  for k, v in pairs(t) do if k ~= "depth" then dev[k] = v end end
  dev.backend = b
  local ok, p = pcall(params.validate, dev, { backends = options.backends() })
  if not ok then error(p, 2) end
  local okb, spec = pcall(backend.core_spec, p)
  if not okb then error("ublk.host.queue: " .. spec, 2) end
  spec.size, spec.block_size = p.size, p.block_size
  local q, err, errno = core.host_queue(spec, depth, p.max_io)
  if not q then return nil, err, errno end
  return setmetatable({ _q = q, depth = depth, max_io = p.max_io, _keep = b }, Queue)
end

-- io(op, offset, length[, flags[, tag]]) -> what the request committed:
-- bytes, or a negative errno.  op: a name ("read") or number.
function Queue:io(op, offset, length, flags, tag)
  return self._q:io(tag or 0, OPS[op] or op, offset, length, flags or 0)
end

local function result(r)
  if r < 0 then return nil, core.errmsg(-r), -r end
  return r
end

-- stats() -> the queue's counters now, as stats.queue gives them: ops,
-- errors, errnos, inflight, bytes, and a Lua backend's own counters and
-- gauges (self.counters in its handlers)
function Queue:stats()
  return require("ublk.stats").queue(self._q:stats_address())
end

-- buffer(tag) -> uint8_t * to the tag's buffer (max_io bytes)
function Queue:buffer(tag)
  return ffi.cast("uint8_t *", self._q:buf(tag or 0))
end

-- read(offset, length[, tag]) -> string | nil, msg, errno
function Queue:read(offset, length, tag)
  local n, err, errno = result(self:io("read", offset, length, 0, tag))
  if not n then return nil, err, errno end
  return ffi.string(self:buffer(tag), n)
end

-- write(offset, data[, flags[, tag]]) -> bytes | nil, msg, errno
function Queue:write(offset, data, flags, tag)
  ffi.copy(self:buffer(tag), data, #data)
  return result(self:io("write", offset, #data, flags, tag))
end

function Queue:flush(tag) return result(self:io("flush", 0, 0, 0, tag)) end
function Queue:discard(offset, length, tag)
  return result(self:io("discard", offset, length, 0, tag))
end
function Queue:write_zeroes(offset, length, flags, tag)
  return result(self:io("write_zeroes", offset, length, flags, tag))
end

-- close(): runs the backend's close() hook and frees everything; idempotent.
function Queue:close()
  self._q:close()
end

return M
