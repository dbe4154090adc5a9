-- contrib/man.lua: ublk-lua(1), the man page, written from the very text
-- `ublk-lua --help` and `ublk-lua VERB --help` print (lua/ublk/cli_args.lua),
-- so that the two cannot say different things.  The Makefile runs it:
--   luajit contrib/man.lua VERSION > build/ublk-lua.1
-- spec/install_spec.lua checks that every line of the help is in the page.
package.path = "lua/?.lua;" .. package.path
local args = require "ublk.cli_args"

local version = arg[1] or "?"

-- Text as troff shows it verbatim: backslashes doubled, a line that
-- begins with '.' or "'" protected from being read as a request.
local function roff(line)
  line = line:gsub("\\", "\\e")
  if line:match("^[.']") then line = "\\&" .. line end
  return line
end

local function verbatim(text)
  local out = { ".nf" }
  for line in (text:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do out[#out + 1] = roff(line) end
  out[#out + 1] = ".fi"
  return table.concat(out, "\n")
end

local page = {
  (".TH UBLK-LUA 1 \"\" \"ublk-lua %s\" \"User Commands\""):format(version),
  ".SH NAME",
  "ublk-lua \\- serve Linux ublk block devices described in Lua",
  ".SH SYNOPSIS AND DESCRIPTION",
  verbatim(args.usage),
}
for _, verb in ipairs(args.verbs()) do
  page[#page + 1] = ".SH " .. verb:upper()
  page[#page + 1] = verbatim(assert(args.help[verb], verb))
end
page[#page + 1] = ".SH FILES"
page[#page + 1] = verbatim([[
/run/ublk-lua/server.log   what background servers (add, recover, reload) say
/run/ublk-lua/devN         the record of device N: its server, script, backend
/run/ublk-lua/devN.lua     the copy of the script that serves device N
/run/ublk-lua/devN.stats   device N's counters (ublk-lua stats)]])
page[#page + 1] = ".SH SEE ALSO"
page[#page + 1] = "The README, docs/backends.md and docs/tuning.md in the documentation "
  .. "directory (share/doc/ublk-lua), and the examples beside them."
io.write(table.concat(page, "\n"), "\n")
