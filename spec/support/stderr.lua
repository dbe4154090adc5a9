-- capture(fn, ...) -> what fn wrote to file descriptor 2 (the runtime's
-- log lines go there), plus fn's results.  For specs that expect an error
-- line: they assert on it instead of printing it.
local ffi = require "ffi"

pcall(ffi.cdef, [[
int dup(int fd);
int dup2(int fd, int to);
int close(int fd);
int fileno(void *stream);
]])

local M = {}

function M.capture(fn, ...)
  local path = os.tmpname()
  local f = assert(io.open(path, "w+"))
  io.stderr:flush()
  local saved = ffi.C.dup(2)
  ffi.C.dup2(ffi.C.fileno(f), 2)
  local res = { pcall(fn, ...) }
  io.stderr:flush()
  ffi.C.dup2(saved, 2)
  ffi.C.close(saved)
  f:seek("set")
  local out = f:read("*a")
  f:close()
  os.remove(path)
  if not res[1] then error(res[2], 0) end
  return out, unpack(res, 2)
end

return M
