-- bench/nbdkit-ram.lua: an nbdkit Lua plugin doing the job of
-- examples/luamem.lua (a RAM disk in Lua), the way nbdkit's Lua API asks:
-- requests arrive and leave as Lua strings.
-- Run: nbdkit lua bench/nbdkit-ram.lua
local size = 256 * 1024 * 1024
local BS = 4096
local zero = string.rep("\0", BS)
local blocks = {}

function open(readonly) return 1 end
function get_size(h) return size end

function pread(h, count, offset)
  local parts, done = {}, 0
  while done < count do
    local off = offset + done
    local b, within = math.floor(off / BS), off % BS
    local n = math.min(BS - within, count - done)
    parts[#parts + 1] = (blocks[b] or zero):sub(within + 1, within + n)
    done = done + n
  end
  return table.concat(parts)
end

function pwrite(h, buf, offset)
  local done, count = 0, #buf
  while done < count do
    local off = offset + done
    local b, within = math.floor(off / BS), off % BS
    local n = math.min(BS - within, count - done)
    local old = blocks[b] or zero
    blocks[b] = old:sub(1, within) .. buf:sub(done + 1, done + n) .. old:sub(within + n + 1)
    done = done + n
  end
end
