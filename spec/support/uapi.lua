-- Reads the struct definitions out of runtime/include/ublk_uapi.h and declares
-- them to LuaJIT's FFI, so Lua code shares the C layout instead of a copy
-- that could drift.
local ffi = require "ffi"

local M = {}

local function header_text(path)
  local f = assert(io.open(path or "runtime/include/ublk_uapi.h", "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Every `struct name { ... };` in the header, in order, with comments gone.
function M.structs(path)
  local src = header_text(path):gsub("/%*.-%*/", "")
  local list = {}
  for name, body in src:gmatch("struct%s+([%w_]+)%s*(%b{});") do
    list[#list + 1] = { name = name, decl = ("struct %s %s;"):format(name, body) }
  end
  return list
end

local declared = false
function M.declare(path)
  if declared then return end
  for _, s in ipairs(M.structs(path)) do ffi.cdef(s.decl) end
  declared = true
end

return M
