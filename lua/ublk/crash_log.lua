-- ublk.crash_log: the recorder's log (docs/crash-testing.md) from Lua:
-- read it (entries up to the last whole one whose check matches) and
-- append a mark to it.  No kernel: the format is the C header's
-- (runtime/backends/record_log.h, as core.record_log_cdef) and the
-- checks are the writer's own C code (core.log_check), so the recorder
-- and this reader cannot drift.
local ffi = require "ffi"
local bit = require "bit"
local core = require "ublk.core"
local errno = require "ublk.errno"
require "ublk.libc" -- open, close, pwrite, flock, ftruncate
local C = ffi.C

local M = {}

ffi.cdef(core.record_log_cdef)

local HEAD = ffi.sizeof("struct ublk_log_head")
local HEADER = ffi.sizeof("struct ublk_log_header")
local CHECK_AT = ffi.offsetof("struct ublk_log_header", "check")
local ENTRY_MAGIC = C.UBLK_LOG_ENTRY_MAGIC
local LOG_MAGIC = "UBLKLOG1"
-- by type number
M.TYPES = {}
for name, num in pairs({ write = C.UBLK_LOG_WRITE, flush = C.UBLK_LOG_FLUSH,
    discard = C.UBLK_LOG_DISCARD, write_zeroes = C.UBLK_LOG_WRITE_ZEROES, mark = C.UBLK_LOG_MARK }) do
  M.TYPES[num] = name
end
local TYPE_NUM = {}
for i, t in ipairs(M.TYPES) do TYPE_NUM[t] = i end
local FUA = C.UBLK_LOG_FUA
-- the largest payload: a request (max_io is at most 1 MiB) or a mark's name
local MAX_DATA = 64 * 1024 * 1024

-- CRC32C, byte-wise; LuaJIT compiles the loop: the checks of a version 1
-- log, which is still read.
local T = ffi.new("uint32_t[256]")
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit.band(c, 1) ~= 0 then c = bit.bxor(bit.rshift(c, 1), 0x82f63b78)
    else c = bit.rshift(c, 1) end
  end
  T[i] = c
end

-- crc32c(crc, string or pointer, len) -> crc (a Lua number, 0 .. 2^32-1)
function M.crc32c(crc, s, len)
  local p = type(s) == "string" and ffi.cast("const uint8_t *", s) or s
  len = len or #s
  local c = bit.bnot(crc)
  for i = 0, len - 1 do
    c = bit.bxor(bit.rshift(c, 8), T[bit.band(bit.bxor(c, p[i]), 255)])
  end
  return (bit.bnot(c) % 2 ^ 32)
end

local head = ffi.new("struct ublk_log_head")
local header = ffi.new("struct ublk_log_header")

-- The file header: { version, block_size, size } or nil, why.
local function parse_header(h)
  if not h or #h < HEADER then return nil, ("shorter than its %d-byte header"):format(HEADER) end
  if h:sub(1, 8) ~= LOG_MAGIC then return nil, "not a ublk-lua log (no UBLKLOG1 magic)" end
  ffi.copy(header, h, HEADER)
  local v = header.version
  if v ~= 1 and v ~= C.UBLK_LOG_VERSION then
    return nil, ("version %d, this reader knows 1 to %d"):format(v, C.UBLK_LOG_VERSION)
  end
  local want = v == 1 and M.crc32c(0, h, CHECK_AT) or core.log_check(h:sub(1, CHECK_AT))
  if header.check ~= want then return nil, "its header's checksum does not match" end
  return { version = v, block_size = header.block_size, size = tonumber(header.size) }
end

-- An entry's check: head (40 bytes, check as zero) and payload.
local function entry_check(version, h, data)
  if version == 1 then
    return M.crc32c(M.crc32c(0, ffi.cast("const uint8_t *", h), HEAD), data, #data)
  end
  return core.log_check(ffi.string(h, HEAD), data)
end

-- read(path) -> log | nil, "ENAME: message"
-- log = { path, version, block_size, size, entries = { { id, type, fua,
-- offset, len, pos (the payload's file offset), name (marks) }, ... },
-- bytes (what was read whole), ignored (bytes after the last whole
-- entry), torn (some of those are not zero: an entry cut short; zeros
-- alone are room the recorder mapped ahead) }
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "ENOENT: log " .. tostring(err) end
  local info, why = parse_header(f:read(HEADER))
  if not info then f:close() return nil, ("EINVAL: log %s: %s"):format(path, why) end
  local log = { path = path, version = info.version, block_size = info.block_size,
    size = info.size, entries = {} }
  local pos = HEADER
  while true do
    local h = f:read(HEAD)
    if not h or #h < HEAD then break end
    ffi.copy(head, h, HEAD)
    if head.magic ~= ENTRY_MAGIC or head.data_len > MAX_DATA or head.type < 1
        or head.type > #M.TYPES then break end
    local n = head.data_len
    local data = n > 0 and f:read(n) or ""
    if not data or #data < n then break end
    local want = head.check
    head.check = 0
    if entry_check(info.version, head, data) ~= want then break end
    local e = { id = #log.entries + 1, type = M.TYPES[head.type],
      fua = bit.band(head.flags, FUA) ~= 0, offset = tonumber(head.offset),
      len = head.len, pos = pos + HEAD }
    if e.type == "mark" then e.name = data end
    log.entries[#log.entries + 1] = e
    pos = pos + HEAD + n
  end
  local total = f:seek("end")
  log.bytes, log.ignored, log.torn = pos, total - pos, false
  f:seek("set", pos)
  for chunk in function() return f:read(1048576) end do
    if chunk:find("[^%z]") then log.torn = true break end
  end
  f:close()
  return log
end

-- An entry as the bytes the recorder writes (type by name; data the
-- payload).  Specs build logs with it; mark() appends one.
function M.entry(type, offset, len, data, fua)
  data = data or ""
  local h = ffi.new("struct ublk_log_head")
  h.magic, h.offset, h.len, h.data_len = ENTRY_MAGIC, offset or 0, len or #data, #data
  h.type = assert(TYPE_NUM[type], "unknown entry type")
  h.flags = fua and FUA or 0
  h.check = entry_check(C.UBLK_LOG_VERSION, h, data)
  return ffi.string(h, HEAD) .. data
end

-- The file header for a device of `size` bytes and `block_size`.
function M.header(block_size, size)
  local h = ffi.new("struct ublk_log_header")
  ffi.copy(h.magic, LOG_MAGIC, 8)
  h.version, h.block_size, h.size = C.UBLK_LOG_VERSION, block_size, size
  h.check = core.log_check(ffi.string(h, CHECK_AT))
  return ffi.string(h, HEADER)
end

local O_WRONLY, O_CLOEXEC, LOCK_EX, LOCK_NB = 1, 0x80000, 2, 4

-- mark(path, name) -> true | nil, "ENAME: message"
-- A log this process records to takes the mark from its writer, between
-- the requests around it.  Any other is appended to after its last whole
-- entry (a torn one or room mapped ahead cut off) under the lock its
-- writer holds: a log another process records to is refused, since only
-- that process knows where its entries end (`ublk-lua mark -n ID NAME`
-- asks it).
function M.mark(path, name)
  if type(name) ~= "string" or name == "" or #name > 4096 then
    error(("mark: the name must be a string of 1 to 4096 bytes, got %s"):format(
      tostring(name)), 2)
  end
  local mine, merr = core.record_mark(path, name)
  if mine then return true end
  if mine == nil then return nil, merr end
  local fd = C.open(path, O_WRONLY + O_CLOEXEC)
  if fd < 0 then return nil, ("%s: log %s"):format(errno[ffi.errno()] or "EIO", path) end
  local function fail(why) C.close(fd) return nil, why end
  if C.flock(fd, LOCK_EX + LOCK_NB) < 0 then
    return fail(("EBUSY: log %s is being recorded by another process: mark it through "
      .. "that process (ublk-lua mark -n ID NAME)"):format(path))
  end
  local log, err = M.read(path)
  if not log then return fail(err) end
  local e = M.entry("mark", 0, 0, name)
  if C.pwrite(fd, e, #e, log.bytes) ~= #e or C.ftruncate(fd, log.bytes + #e) < 0 then
    return fail(("EIO: log %s: cannot append (%s)"):format(path, errno[ffi.errno()] or "?"))
  end
  C.close(fd)
  return true
end

return M
