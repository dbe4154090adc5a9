-- ublk.crash_log: the recorder's log (docs/crash-testing.md) from Lua:
-- read it (entries up to the last whole one whose CRC matches) and append
-- a mark to it.  Pure Lua and FFI: no ublk.core, no kernel.
local ffi = require "ffi"
local bit = require "bit"

local M = {}

ffi.cdef [[
struct ublk_crash_head {
  uint32_t magic, crc;
  uint64_t offset;
  uint32_t len, data_len;
  uint8_t type, flags, zero[14];
};
]]

local HEAD = 40
local ENTRY_MAGIC = 0x52454b42
local LOG_MAGIC = "UBLKLOG1"
M.TYPES = { "write", "flush", "discard", "write_zeroes", "mark" }
local TYPE_NUM = {}
for i, t in ipairs(M.TYPES) do TYPE_NUM[t] = i end
local FUA = 1
-- the largest payload: a request (max_io is at most 1 MiB) or a mark's name
local MAX_DATA = 64 * 1024 * 1024

-- CRC32C, byte-wise; LuaJIT compiles the loop.  The same CRC as
-- runtime/base/crc32c.c.
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

local head = ffi.new("struct ublk_crash_head")
local function u32(s, at)
  local b1, b2, b3, b4 = s:byte(at + 1, at + 4)
  return b1 + b2 * 256 + b3 * 65536 + b4 * 16777216
end

-- The 64-byte file header: { block_size, size } or nil, why.
local function parse_header(h)
  if not h or #h < 64 then return nil, "shorter than its 64-byte header" end
  if h:sub(1, 8) ~= LOG_MAGIC then return nil, "not a ublk-lua log (no UBLKLOG1 magic)" end
  if u32(h, 60) ~= M.crc32c(0, h, 60) then return nil, "its header's checksum does not match" end
  local version = u32(h, 8)
  if version ~= 1 then return nil, ("version %d, this reader knows 1"):format(version) end
  return { block_size = u32(h, 12), size = u32(h, 16) + u32(h, 20) * 2 ^ 32 }
end

-- read(path) -> log | nil, "ENAME: message"
-- log = { path, block_size, size, entries = { { id, type, fua, offset,
-- len, pos (the payload's file offset), name (marks) }, ... }, bytes
-- (what was read whole), ignored (bytes after the last whole entry) }
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "ENOENT: log " .. tostring(err) end
  local info, why = parse_header(f:read(64))
  if not info then f:close() return nil, ("EINVAL: log %s: %s"):format(path, why) end
  local log = { path = path, block_size = info.block_size, size = info.size, entries = {} }
  local pos = 64
  while true do
    local h = f:read(HEAD)
    if not h or #h < HEAD then break end
    ffi.copy(head, h, HEAD)
    if head.magic ~= ENTRY_MAGIC or head.data_len > MAX_DATA or head.type < 1
        or head.type > #M.TYPES then break end
    local n = head.data_len
    local data = n > 0 and f:read(n) or ""
    if not data or #data < n then break end
    local want = head.crc
    head.crc = 0
    local crc = M.crc32c(M.crc32c(0, ffi.cast("const uint8_t *", head), HEAD), data, n)
    if crc ~= want then break end
    local e = { id = #log.entries + 1, type = M.TYPES[head.type],
      fua = bit.band(head.flags, FUA) ~= 0, offset = tonumber(head.offset),
      len = head.len, pos = pos + HEAD }
    if e.type == "mark" then e.name = data end
    log.entries[#log.entries + 1] = e
    pos = pos + HEAD + n
  end
  local total = f:seek("end")
  f:close()
  log.bytes, log.ignored = pos, total - pos
  return log
end

-- An entry as the bytes the recorder writes (type by name; data the
-- payload).  Specs build logs with it; mark() appends one.
function M.entry(type, offset, len, data, fua)
  data = data or ""
  local h = ffi.new("struct ublk_crash_head")
  h.magic, h.offset, h.len, h.data_len = ENTRY_MAGIC, offset or 0, len or #data, #data
  h.type = assert(TYPE_NUM[type], "unknown entry type")
  h.flags = fua and FUA or 0
  h.crc = M.crc32c(M.crc32c(0, ffi.cast("const uint8_t *", h), HEAD), data, #data)
  return ffi.string(h, HEAD) .. data
end

-- The file header for a device of `size` bytes and `block_size`.
function M.header(block_size, size)
  local function le(v, n)
    local t = {}
    for i = 1, n do t[i] = string.char(v % 256) v = math.floor(v / 256) end
    return table.concat(t)
  end
  local h = LOG_MAGIC .. le(1, 4) .. le(block_size, 4) .. le(size, 8) .. ("\0"):rep(36)
  return h .. le(M.crc32c(0, h, 60), 4)
end

-- mark(path, name) -> true | nil, "ENAME: message"
-- One write on the log opened for appending (O_APPEND): the kernel puts
-- it whole after whatever the recorder appended last.
function M.mark(path, name)
  if type(name) ~= "string" or name == "" or #name > 4096 then
    error(("mark: the name must be a string of 1 to 4096 bytes, got %s"):format(
      tostring(name)), 2)
  end
  local f, err = io.open(path, "ab")
  if not f then return nil, "ENOENT: log " .. tostring(err) end
  local e = M.entry("mark", 0, 0, name)
  f:setvbuf("full", #e + 4096) -- all of it in one write, at close
  local ok, werr = f:write(e)
  f:close()
  if not ok then return nil, "EIO: log " .. path .. ": " .. tostring(werr) end
  return true
end

return M
