-- ublk.block_limits: the block layer's limits a device may set
-- (UBLK_PARAM_TYPE_DMA_ALIGN and _SEGMENT, Linux 6.15+) and its partition
-- scan (UBLK_F_NO_AUTO_PART_SCAN, 7.0+): checked by the kernel's own rules
-- (ublk_validate_params) for ublk.params, and said in one line for
-- dev:info() and `list`.
local check = require "ublk.check"
local size = require "ublk.size"

local format = string.format

local limits = {}

-- The fields, each absent unless given.
limits.fields = { "dma_align", "max_segment_size", "max_segments", "no_auto_part_scan",
  "segment_boundary" }

-- Checks t's limits into out (raises check.Failure): a DMA alignment below a
-- page, a segment boundary and size of at least 4 KiB (UBLK_MIN_SEGMENT_SIZE).
-- A segment never crosses the boundary, so none can be larger than it.
function limits.check(t, out)
  if t.dma_align ~= nil then
    local n = check.size("dma_align", t.dma_align)
    if n > 4096 or not check.is_pow2(n) then
      check.bad("dma_align", t.dma_align, "must be a power of two from 1 to 4096 bytes (a page)")
    end
    out.dma_align = n
  end
  if t.max_segments ~= nil then
    out.max_segments = check.int("max_segments", t.max_segments, 1, 65535)
  end
  if t.segment_boundary ~= nil then
    local n = check.size("segment_boundary", t.segment_boundary)
    if n < 4096 or n > 2 ^ 52 or not check.is_pow2(n) then
      check.bad("segment_boundary", t.segment_boundary,
        "must be a power of two from 4 KiB to 4 PiB (no segment crosses it)")
    end
    out.segment_boundary = n
  end
  if t.max_segment_size ~= nil then
    local n = check.size("max_segment_size", t.max_segment_size)
    local hi = math.min(out.segment_boundary or 2 ^ 32, 2 ^ 32) - 1
    if n < 4096 or n > hi then
      check.bad("max_segment_size", t.max_segment_size, format("must be from 4096 to %d bytes%s",
        hi, out.segment_boundary and " (segment_boundary - 1: no segment crosses it)" or ""))
    end
    out.max_segment_size = n
  end
  if t.no_auto_part_scan ~= nil then
    out.no_auto_part_scan = check.bool("no_auto_part_scan", t.no_auto_part_scan)
  end
end

-- ", dma_align 512, ..." for what a device was given of these
-- (dev:info(), core.dev_info), or ""
function limits.text(info)
  local s = {}
  if info.flags and info.flags.no_auto_part_scan then s[#s + 1] = "no auto partition scan" end
  if info.dma_align then s[#s + 1] = "dma_align " .. info.dma_align end
  if info.max_segments then
    s[#s + 1] = ("segments %d x %s, boundary %s"):format(info.max_segments,
      size.format(info.max_segment_size), size.format(info.segment_boundary))
  end
  return #s > 0 and ", " .. table.concat(s, ", ") or ""
end

return limits
