-- ublk.cli_out: how the CLI verbs speak: a result line on stdout, a
-- failure on stderr after "ublk-lua: ".  One place, so that every verb's
-- lines look alike and specs can match them.
local M = {}

-- out(fmt, ...): one line on stdout, fmt:format(...)
function M.out(fmt, ...) io.stdout:write(fmt:format(...), "\n") end

-- complain(msg): one line on stderr
function M.complain(msg) io.stderr:write("ublk-lua: ", msg, "\n") end

return M
