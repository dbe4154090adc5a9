-- ublk.globals: the globals a backend's handlers read that a queue
-- thread's lua_State will not have.  Handlers travel to each queue as
-- bytecode (ublk.transfer): their upvalues go with them, but globals are
-- looked up in the queue's own state, which has only LuaJIT's standard
-- library.  A name the script defined as a global (a missing `local`)
-- reads as nil there, and every request fails; said at creation instead.
local bit = require "bit"
local jutil = require "jit.util"
local ok_vmdef, vmdef = pcall(require, "jit.vmdef")

local globals = {}

-- What luaL_openlibs gives a LuaJIT 2.1 state: all a queue state has
-- (runtime/lua/lua_queue.c).
local STANDARD = {}
for name in ([[_G _VERSION assert bit collectgarbage coroutine debug dofile error gcinfo
  getfenv getmetatable io ipairs jit load loadfile loadstring math module newproxy next os
  package pairs pcall print rawequal rawget rawset require select setfenv setmetatable
  string table tonumber tostring type unpack xpcall]]):gmatch("%S+") do
  STANDARD[name] = true
end

local function opname(ins)
  local op = bit.band(ins, 0xff)
  return (vmdef.bcnames:sub(op * 6 + 1, op * 6 + 6):gsub(" +$", ""))
end

-- Every GGET and GSET of f and of the functions defined inside it.
local function scan(f, where, reads, writes)
  local info = jutil.funcinfo(f)
  for pc = 1, (info.bytecodes or 1) - 1 do
    local ins = jutil.funcbc(f, pc)
    if not ins then break end
    local op = opname(ins)
    if op == "GGET" or op == "GSET" then
      local name = jutil.funck(f, -bit.rshift(ins, 16) - 1)
      if op == "GSET" then
        writes[name] = true
      elseif not reads[name] then
        local at = jutil.funcinfo(f, pc)
        reads[name] = ("%s (%s:%d)"):format(where, (info.source or "?"):gsub("^@", ""),
          at.currentline or 0)
      end
    end
  end
  for i = 0, (info.gcconsts or 0) - 1 do
    local k = jutil.funck(f, -i - 1)
    if type(k) == "proto" then scan(k, where, reads, writes) end
  end
end

-- checker() -> visit, missing.  visit(f, where) is ublk.transfer's;
-- missing() lists, one message each, the globals read and neither
-- standard nor set by any of the functions visited (a handler may set
-- one that another reads: open() making a table, say).
function globals.checker()
  local reads, writes = {}, {}
  local function visit(f, where)
    if ok_vmdef then scan(f, where, reads, writes) end
  end
  local function missing()
    local out = {}
    for name, where in pairs(reads) do
      if not STANDARD[name] and not writes[name] then
        out[#out + 1] = ("%s reads the global '%s', which a queue's Lua state does not have: "
          .. "it will be nil there (a missing `local`? a local of the script travels with "
          .. "the handler)"):format(where, name)
      end
    end
    table.sort(out)
    return out
  end
  return visit, missing
end

return globals
