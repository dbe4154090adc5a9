-- ublk.queue: the Lua side of one queue thread that serves a Lua backend.
-- runtime/lua/lua_queue.c creates this queue's lua_State, calls init() once,
-- then calls the handlers it returns straight from C for every request.
--
-- Nothing here runs per I/O except the small delegate and async helpers:
-- requests arrive as `struct ublk_lua_req *` cdata (one per tag, made
-- once), and the C entry points in struct ublk_lua_ctx never call back
-- into Lua.  Both types come from runtime/lua/lua_ffi.h through core.cdef.
local ffi = require "ffi"
require "ublk.libc" -- the C library calls below (ffi.C)
local core = require "ublk.core"
local ublk = require "ublk"
local errno = require "ublk.errno"
local transfer = require "ublk.transfer"

ffi.cdef(core.cdef)

local M = {}

local yield, running = coroutine.yield, coroutine.running
local errmsg = core.errmsg

-- The failure shape of every helper: nil, "ENAME: message", errno.
local function fail(r)
  return nil, errmsg(-r), -r
end

-- self.counters in the handlers: the backend's own counters and gauges
-- (ublk.backend's `counters`), kept in the queue's statistics block where
-- `ublk-lua stats`, dev:stats() and /metrics read them.  A handler writes
-- them as fields: self.counters.hits = self.counters.hits + 1.
local function counters(stats_block, declared)
  require "ublk.stats" -- its cdef: struct ublk_queue_stats
  local st = ffi.cast("struct ublk_queue_stats *", stats_block)
  local names, slot = {}, {}
  for name in pairs(declared) do names[#names + 1] = name end
  table.sort(names)
  for i, name in ipairs(names) do
    slot[name] = i - 1
    st.counter_gauge[i - 1] = declared[name] == "gauge" and 1 or 0
    ffi.copy(st.counter_names[i - 1], name)
  end
  local values = st.counters
  local function unknown(name)
    error(("ublk: self.counters has no '%s' (the backend's counters declare %s)"):format(
      tostring(name), table.concat(names, ", ")), 3)
  end
  return setmetatable({}, {
    __index = function(_, name)
      local i = slot[name]
      if not i then unknown(name) end
      return values[i]
    end,
    __newindex = function(_, name, v)
      local i = slot[name]
      if not i then unknown(name) end
      -- what /metrics and stats --json can say: a finite number
      if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
        error(("ublk: self.counters.%s = %s: a finite number"):format(name, tostring(v)), 2)
      end
      values[i] = v
    end,
  })
end

-- A req used outside its own handler call is the handler's bug: it raises.
local function stale(what, req, level)
  error(("ublk: %s on the request of tag %d, which this handler does not serve"
    .. " (a req is only good in its own handler call)"):format(what, req.tag), level + 1)
end

-- The request type, struct ublk_lua_req: req.buf and req:copy.
-- req.buf: the tag's buffer, filled (for a write) at its first use and
-- copied into the request (for a read) once the handler is done, where
-- data moves by user copy; req:copy(mem [, len [, off]]) moves the data
-- between the request and mem with no buffer in between: a read copies
-- mem into the request, a write the request into mem.  A whole request
-- of 64 KiB or more into a ublk.shared region goes by zero copy where
-- the kernel has it (runtime/lua/lua_ffi.c): an async handler waits for it;
-- a sync handler's request ends when it does, as with a delegate.
-- A req is good only in its own handler call: the C side refuses any
-- other's tag (ESTALE), and that is the handler's bug, so it raises.
local function request_type(ctx)
  local q, QUEUED, c_buffer, c_copy = ctx.q, ffi.C.UBLK_LUA_QUEUED, ctx.buffer, ctx.copy
  local ESTALE = errno.ESTALE
  local Req = {}
  function Req.copy(req, mem, len, off)
    local r = c_copy(q, req.tag, mem, len or req.length - (off or 0), off or 0)
    if r == QUEUED then r = yield() end -- an async handler's zero copy
    if r == -ESTALE then stale("req:copy", req, 2) end
    if r < 0 then return fail(r) end
    return r
  end
  ffi.metatype("struct ublk_lua_req", {
    __index = function(req, k)
      if k == "buf" then
        if req._buffered ~= 0 then return req._buf end
        local p = c_buffer(q, req.tag)
        if p == nil then
          local e = ffi.errno()
          if e == ESTALE then stale("req.buf", req, 2) end
          error(("ublk: reading the request's data into req.buf failed: %s"):format(errmsg(e)), 2)
        end
        return p
      end
      return Req[k]
    end,
  })
end

-- The delegate class: C backends captured by the handlers become
-- delegates on this queue, with one method per op the C side names
-- (core.ops: name -> UBLK_IO_OP_*): read/write move data (req [, buf,
-- len, off]), flush carries none, the others a range (req [, len, off]).
local function delegate_class(ctx)
  local q, async, QUEUED, c_delegate = ctx.q, ctx.async, ffi.C.UBLK_LUA_QUEUED, ctx.delegate
  local EBUSY, ESTALE, EINPROGRESS = errno.EBUSY, errno.ESTALE, errno.EINPROGRESS
  local Delegate = {}
  Delegate.__index = Delegate
  local op_names = {}
  for name, op in pairs(core.ops) do op_names[op] = name end
  -- The buffer a synchronous handler gave its delegate, per tag: the
  -- handler has returned while the delegate still moves data there, and
  -- this may be the last reference to it.  Kept until the tag's next delegate call,
  -- which comes after this request has been committed, so after the
  -- delegate is done.  (An async handler's stack holds its own.)
  local lent = {}
  local function call(d, op, req, buf, len, off)
    local r = c_delegate(q, d.index, op, req.tag, buf or req.buf, len or req.length,
      off or req.offset, req.flags)
    if r == QUEUED then
      -- A synchronous handler hands the request over: `return base:read(req)`
      -- passes this on, and the delegate's completion finishes the request.
      if not async or running() == nil then
        lent[req.tag] = buf
        return fail(-EINPROGRESS)
      end
      r = yield()
    elseif r == -EBUSY then
      error("ublk: this request's delegate is still busy with an earlier call", 3)
    elseif r == -ESTALE then
      stale("delegate " .. op_names[op], req, 3)
    end
    if r < 0 then return fail(r) end
    return r
  end
  for name, op in pairs(core.ops) do
    if name == "read" or name == "write" then
      Delegate[name] = function(self, req, buf, len, off) return call(self, op, req, buf, len, off) end
    elseif name == "flush" then
      Delegate[name] = function(self, req) return call(self, op, req, nil, 0, 0) end
    else
      Delegate[name] = function(self, req, len, off) return call(self, op, req, nil, len, off) end
    end
  end
  return Delegate
end

-- The queue-side helpers (ublk.sleep, ublk.io, ublk.queue_id), replacing
-- the control side's stubs.  Waiting needs a coroutine: each says so
-- before anything is submitted.
local function install_helpers(ctx)
  local q, async, QUEUED = ctx.q, ctx.async, ffi.C.UBLK_LUA_QUEUED
  local c_sleep, c_rw, c_fsync = ctx.sleep, ctx.rw, ctx.fsync
  local function may_wait(name)
    if not async or running() == nil then
      error("ublk." .. name .. ": the backend must set async = true to wait"
        .. " (and call it from a handler)", 3)
    end
  end
  local function wait(r)
    if r == QUEUED then return yield() end
    return r
  end
  function ublk.sleep(ms)
    may_wait("sleep")
    local r = wait(c_sleep(q, ms))
    if r < 0 and r ~= -errno.ETIME then return fail(r) end
    return true
  end
  ublk.io = {
    pread = function(fd, buf, len, off)
      may_wait("io.pread")
      local r = wait(c_rw(q, 0, fd, buf, len, off))
      if r < 0 then return fail(r) end
      return r
    end,
    pwrite = function(fd, buf, len, off)
      may_wait("io.pwrite")
      local r = wait(c_rw(q, 1, fd, buf, len, off))
      if r < 0 then return fail(r) end
      return r
    end,
    fsync = function(fd)
      may_wait("io.fsync")
      local r = wait(c_fsync(q, fd))
      if r < 0 then return fail(r) end
      return true
    end,
    -- open(path, "r" | "rw") -> fd | nil, "ENAME: message", errno: for open() hooks
    open = function(path, mode)
      local fd = ffi.C.open(path, mode == "rw" and 2 or 0)
      if fd < 0 then return fail(-ffi.errno()) end
      return fd
    end,
    close = function(fd) ffi.C.close(fd) end,
  }
  local queue_id = ctx.queue
  function ublk.queue_id() return queue_id end
end

-- init(ctx, chunk) -> self, handlers (by op), reqs (by tag), errno
function M.init(ctx_ptr, chunk)
  local ctx = ffi.cast("struct ublk_lua_ctx *", ctx_ptr)
  request_type(ctx)
  local Delegate = delegate_class(ctx)
  install_helpers(ctx)

  -- the backend's table as the control side packed it: captured C
  -- backends come back as delegates, ublk.shared regions as regions
  local function special(kind, a, b, fd)
    if kind == "inner" then return setmetatable({ index = a }, Delegate) end
    if kind == "shared" then
      local ptr = ffi.cast("uint8_t *", a)
      if fd and fd >= 0 then ctx.region(ctx.q, ptr, b, fd) end -- for req:copy's zero copy
      return setmetatable({ ptr = ptr, size = b }, ublk._Shared)
    end
    error("ublk.queue: unknown special value " .. tostring(kind))
  end
  local self = transfer.unpack(chunk, special)
  if type(self.counters) == "table" then self.counters = counters(ctx.stats, self.counters) end
  local reqs = {}
  for t = 0, ctx.depth - 1 do reqs[t] = ctx.reqs + t end
  if self.open then self:open({ id = ctx.queue, depth = ctx.depth }) end
  local handlers = {}
  for name, op in pairs(require("ublk.backend").HANDLERS) do handlers[op] = self[name] end
  return self, handlers, reqs, errno
end

return M
