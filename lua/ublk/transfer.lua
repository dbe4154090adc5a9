-- ublk.transfer: copies a backend from the Lua state that built it into
-- each queue thread's own lua_State.
--
-- A backend is a table of handlers whose upvalues hold its configuration
-- (`local key = 0x5a`), helper functions and modules.  pack() turns that
-- graph into a Lua chunk that rebuilds it: functions travel as bytecode,
-- their upvalues are set (and joined where two closures share one), tables
-- are copied, modules (anything in package.loaded, e.g. ffi, bit, ublk)
-- are required again by name, and objects the caller knows (C backends,
-- shared memory) are handed to its `special` function.  Userdata, cdata
-- and coroutines cannot cross states: pack() says which value and where.
local ffi = require "ffi"

local transfer = {}

local format = string.format
local int64, uint64 = ffi.typeof("int64_t"), ffi.typeof("uint64_t")

-- Modules by table, and module functions by value (for C functions such
-- as ffi.copy or string.byte that cannot be dumped as bytecode).
local function module_index()
  local mods, fns = {}, {}
  for name, mod in pairs(package.loaded) do
    if type(mod) == "table" and type(name) == "string" then
      mods[mod] = mods[mod] or name
      for k, v in pairs(mod) do
        if type(k) == "string" and type(v) == "function" and not fns[v] then
          fns[v] = { name, k }
        end
      end
    end
  end
  return mods, fns
end

local function literal(v)
  local t = type(v)
  if t == "nil" or t == "boolean" then return tostring(v) end
  if t == "string" then return format("%q", v) end
  if v ~= v then return "(0/0)" end
  if v == math.huge then return "(1/0)" end
  if v == -math.huge then return "(-1/0)" end
  if v == math.floor(v) and math.abs(v) < 2^53 then return format("%d", v) end
  return format("%.17g", v)
end

-- pack(root, special, visit) -> chunk.  special(v) may return a list of
-- literal arguments to rebuild v on the other side with special(...).
-- visit(f, where), if given, sees every Lua function that travels as
-- bytecode (ublk.globals reads what they expect to find there).
function transfer.pack(root, special, visit)
  local mods, fns = module_index()
  local ids, out, n = {}, { "local F, M, MF, S, U, J = ...\nlocal R = {}" }, 0
  local upvalues = {} -- upvalue id -> { node, index }: shared upvalues
  local node

  local function ref(v, where)
    local t = type(v)
    if t == "nil" or t == "boolean" or t == "number" or t == "string" then
      return literal(v)
    end
    -- 64-bit integers are values, and LuaJIT reads them back as literals
    if t == "cdata" and (ffi.istype(int64, v) or ffi.istype(uint64, v)) then
      return tostring(v)
    end
    return "R[" .. node(v, where) .. "]"
  end

  local function new(v, expr)
    n = n + 1
    ids[v] = n
    out[#out + 1] = format("R[%d]=%s", n, expr)
    return n
  end

  local function lua_function(f, where)
    local ok, code = pcall(string.dump, f)
    if not ok then error(format("cannot copy %s to the queue threads: %s", where, code), 0) end
    if visit then visit(f, where) end
    local id = new(f, "F(" .. literal(code) .. ")")
    local i = 1
    while true do
      local name, value = debug.getupvalue(f, i)
      if name == nil then break end
      local uid = debug.upvalueid(f, i)
      local seen = upvalues[uid]
      if seen then
        out[#out + 1] = format("J(R[%d],%d,R[%d],%d)", id, i, seen[1], seen[2])
      else
        upvalues[uid] = { id, i }
        local expr = ref(value, format("upvalue '%s' of %s", name, where))
        out[#out + 1] = format("U(R[%d],%d,%s)", id, i, expr)
      end
      i = i + 1
    end
    return id
  end

  node = function(v, where)
    if ids[v] then return ids[v] end
    local args = special and special(v)
    if args then
      local parts = {}
      for i = 1, #args do parts[i] = literal(args[i]) end
      return new(v, "S(" .. table.concat(parts, ",") .. ")")
    end
    if mods[v] then return new(v, "M(" .. literal(mods[v]) .. ")") end
    local t = type(v)
    if t == "function" then
      if fns[v] then return new(v, format("MF(%s,%s)", literal(fns[v][1]), literal(fns[v][2]))) end
      if debug.getinfo(v, "S").what == "C" then
        error(format("cannot copy %s to the queue threads: a C function that is not in a loaded module", where), 0)
      end
      return lua_function(v, where)
    elseif t == "table" then
      local id = new(v, "{}")
      for k, x in pairs(v) do
        local kexpr = ref(k, where .. " key")
        local kname = type(k) == "string" and k or tostring(k)
        local vexpr = ref(x, where .. "." .. kname)
        out[#out + 1] = format("R[%d][%s]=%s", id, kexpr, vexpr)
      end
      local mt = debug.getmetatable(v)
      if mt then
        local mexpr = ref(mt, where .. " metatable")
        out[#out + 1] = format("setmetatable(R[%d],%s)", id, mexpr)
      end
      return id
    end
    error(format("cannot copy %s to the queue threads: a %s cannot cross Lua states"
      .. " (create it in the backend's open(), or use ublk.shared)", where, t), 0)
  end

  -- (every ref() is evaluated before its line is appended: ref() itself
  -- appends the lines that build the value)
  local rexpr = ref(root, "the backend")
  out[#out + 1] = "return " .. rexpr
  return table.concat(out, "\n")
end

-- unpack(chunk, special) -> the rebuilt value, in the calling state.
function transfer.unpack(chunk, special)
  local build = assert(loadstring(chunk, "=backend"))
  local function F(code) return assert(loadstring(code)) end
  local function M(name) return require(name) end
  local function MF(name, k) return require(name)[k] end
  local function U(f, i, v) debug.setupvalue(f, i, v) end
  local function J(f1, i1, f2, i2) debug.upvaluejoin(f1, i1, f2, i2) end
  return build(F, M, MF, special, U, J)
end

return transfer
