-- shell.run(cmd) -> its exit status, and everything it printed (stdout and
-- stderr, in order): how host specs run a command and judge it by both.
local M = {}

function M.run(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\"")
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return tonumber(rc), body
end

return M
