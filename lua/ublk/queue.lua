-- ublk.queue: the Lua side of one queue thread that serves a Lua backend.
-- runtime/backend_lua.c creates this queue's lua_State, calls init() once,
-- then calls the handlers it returns straight from C for every request.
--
-- Nothing here runs per I/O except the small delegate and async helpers:
-- requests arrive as `struct ublk_lua_req *` cdata (one per tag, made
-- once), and the C functions below are reached through FFI pointers that
-- never call back into Lua.
local ffi = require "ffi"
local ublk = require "ublk"
local errno = require "ublk.errno"
local transfer = require "ublk.transfer"

ffi.cdef [[
struct ublk_lua_req {
  uint8_t *buf;      /* this tag's buffer: read fills it, write reads it */
  double offset;     /* bytes */
  uint32_t length;   /* bytes */
  uint32_t flags;    /* UBLK_IO_F_* */
  uint16_t tag;
  uint16_t queue;
  uint8_t op;        /* 0 read, 1 write, 2 flush, 3 discard, 5 write_zeroes */
};
int open(const char *path, int flags, ...);
int close(int fd);
]]

local M = {}

local yield, running = coroutine.yield, coroutine.running

local function fail(r)
  return nil, errno[-r] or ("errno " .. -r), -r
end

-- init(info) -> self, handlers (by op), reqs (by tag), errno
function M.init(info)
  assert(ffi.sizeof("struct ublk_lua_req") == info.req_size
    and ffi.offsetof("struct ublk_lua_req", "op") == info.req_op_offset,
    "struct ublk_lua_req in ublk/queue.lua differs from runtime/backend_lua.c")
  local ctx, async, PENDING, MARK = info.ctx, info.async, info.pending, info.pending_mark
  local f = info.fns
  local delegate = ffi.cast("int (*)(void *, int, int, uint16_t, uint8_t *, uint32_t, double, uint32_t)", f.delegate)
  local sleep = ffi.cast("int (*)(void *, double)", f.sleep)
  local rw = ffi.cast("int (*)(void *, int, int, void *, uint32_t, double)", f.rw)
  local fsync = ffi.cast("int (*)(void *, int)", f.fsync)

  -- Waits for the completion of what was just submitted for this tag.
  local function wait(r, name)
    if r < 0 then return r end
    if not async or running() == nil then
      error("ublk." .. name .. ": the backend must set async = true to wait", 3)
    end
    return yield()
  end

  -- C backends captured by the handlers become delegates on this queue.
  local Delegate = {}
  Delegate.__index = Delegate
  local function call(d, op, req, buf, len, off)
    local r = delegate(ctx, d.index, op, req.tag, buf or req.buf, len or req.length,
      off or req.offset, req.flags)
    if r == PENDING then
      -- a synchronous handler hands the request over: return this marker
      if not async or running() == nil then return MARK end
      r = yield()
    end
    if r < 0 then return fail(r) end
    return r
  end
  function Delegate:read(req, buf, len, off) return call(self, 0, req, buf, len, off) end
  function Delegate:write(req, buf, len, off) return call(self, 1, req, buf, len, off) end
  function Delegate:flush(req) return call(self, 2, req, nil, 0, 0) end
  function Delegate:discard(req, len, off) return call(self, 3, req, nil, len, off) end
  function Delegate:write_zeroes(req, len, off) return call(self, 5, req, nil, len, off) end

  local function special(kind, a, b)
    if kind == "inner" then return setmetatable({ index = a }, Delegate) end
    if kind == "shared" then
      return setmetatable({ ptr = ffi.cast("uint8_t *", a), size = b }, ublk._Shared)
    end
    error("ublk.queue: unknown special value " .. tostring(kind))
  end

  -- The queue-side helpers, replacing the control side's stubs.
  function ublk.sleep(ms)
    local r = wait(sleep(ctx, ms), "sleep")
    if r < 0 and r ~= -errno.ETIME then return fail(r) end
    return true
  end
  ublk.io = {
    pread = function(fd, buf, len, off)
      local r = wait(rw(ctx, 0, fd, buf, len, off), "io.pread")
      if r < 0 then return fail(r) end
      return r
    end,
    pwrite = function(fd, buf, len, off)
      local r = wait(rw(ctx, 1, fd, buf, len, off), "io.pwrite")
      if r < 0 then return fail(r) end
      return r
    end,
    fsync = function(fd)
      local r = wait(fsync(ctx, fd), "io.fsync")
      if r < 0 then return fail(r) end
      return true
    end,
    -- open(path, "r" | "rw") -> fd | nil, name, errno: for open() hooks
    open = function(path, mode)
      local fd = ffi.C.open(path, mode == "rw" and 2 or 0)
      if fd < 0 then return fail(-ffi.errno()) end
      return fd
    end,
    close = function(fd) ffi.C.close(fd) end,
  }
  function ublk.queue_id() return info.queue end

  local self = transfer.unpack(info.chunk, special)
  local base = ffi.cast("struct ublk_lua_req *", info.reqs)
  local reqs = {}
  for t = 0, info.depth - 1 do reqs[t] = base + t end
  if self.open then self:open({ id = info.queue, depth = info.depth }) end
  local handlers = {}
  for name, op in pairs(require("ublk.backend").HANDLERS) do handlers[op] = self[name] end
  return self, handlers, reqs, errno
end

return M
