-- ublk.cli_crash: the power-cut verbs (docs/crash-testing.md).
--   ublk-lua mark -n ID NAME
--   ublk-lua replay LOG --to MARK|ENTRY -o IMAGE [--base IMG]
--   ublk-lua crashtest LOG --check 'CMD {dev}' [--base IMG] [--seed S]
--                      [--states N] [--torn] [--state ID] [--dir DIR]
-- crashtest writes each crash state onto an image file and runs CMD with
-- {dev} replaced by its path, {marks} by a file listing the marks made
-- before the state's power cut (one a line) and {state} by its id.  It
-- stops at the first state whose CMD exits non-zero and prints the line
-- that rebuilds and checks exactly that state again.
local crash = require "ublk.crash"

local M = {}

-- The verbs' usage and options are the command line's tables
-- (cli_args.lua), which the man page and the completion are made from.
local args = require "ublk.cli_args"

local complain = require("ublk.cli_out").complain

-- Options of `verb` (name -> true if it takes no value) from argv[2..];
-- -> options, positional words | nil, message
local function parse(verb, argv, known)
  local o, words, i = {}, {}, 2
  while argv[i] do
    local a = argv[i]
    if a == "-h" or a == "--help" then return nil, "help" end
    if a:sub(1, 1) == "-" and #a > 1 then
      if known[a] == nil then return nil, ("%s: unknown option '%s'"):format(verb, a) end
      if known[a] then o[a] = true i = i + 1
      else
        if argv[i + 1] == nil then return nil, ("%s: %s needs a value"):format(verb, a) end
        o[a] = argv[i + 1]
        i = i + 2
      end
    else
      words[#words + 1] = a
      i = i + 1
    end
  end
  return o, words
end

local function whole(v, name, min)
  local n = tonumber(v)
  if not n or n ~= math.floor(n) or n < min or n > 2 ^ 31 then
    return nil, ("%s needs a whole number from %d, got '%s'"):format(name, min, tostring(v))
  end
  return n
end

local function mark(o, words)
  local id = whole(o["-n"], "-n", 0)
  if not id or #words ~= 1 then return nil, "mark: give -n ID and one NAME" end
  local rec = require("ublk.state").read(id)
  if not rec then return 1, ("mark: device %d has no record (is it ublk-lua's?)"):format(id) end
  if type(rec.log) ~= "string" then
    return 1, ("mark: device %d does not record (add --record LOG)"):format(id)
  end
  local ok, err = require("ublk.crash_log").mark(rec.log, words[1])
  if not ok then return 1, "mark: " .. err end
  return 0
end

local function replay(o, words)
  if #words ~= 1 or not o["--to"] or not o["-o"] then
    return nil, "replay: give LOG, --to MARK|ENTRY and -o IMAGE"
  end
  local log, err = crash.read(words[1])
  if not log then return 1, "replay: " .. err end
  local n, ferr = crash.find(log, o["--to"])
  if not n then return 1, ("replay: %s: %s"):format(words[1], ferr) end
  local ok, werr = crash.write_state(log, crash.prefix(log, n), o["-o"], { base = o["--base"] })
  if not ok then return 1, "replay: " .. werr end
  io.stdout:write(("%s: the disk after entry %d of %d\n"):format(o["-o"], n, #log.entries))
  return 0
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function run_check(cmd, image, marks_path, id)
  local line = cmd:gsub("{dev}", function() return quote(image) end)
    :gsub("{marks}", function() return quote(marks_path) end)
    :gsub("{state}", function() return id end)
  local ok, how, code = os.execute(line)
  -- Lua 5.1 (LuaJIT without 5.2 compat) gives the status alone
  if type(ok) == "number" then return ok == 0, ok >= 256 and math.floor(ok / 256) or ok end
  return ok == true, code or how
end

local function crashtest(o, words)
  if #words ~= 1 or not o["--check"] then
    return nil, "crashtest: give LOG and --check 'CMD {dev}'"
  end
  local seed, serr = whole(o["--seed"] or 1, "--seed", 0)
  if not seed then return nil, "crashtest: " .. serr end
  local n, nerr = whole(o["--states"] or 16, "--states", 0)
  if not n then return nil, "crashtest: " .. nerr end
  local path = words[1]
  local log, err = crash.read(path)
  if not log then return 1, "crashtest: " .. err end
  local dir = o["--dir"] or os.getenv("TMPDIR") or "/tmp"
  local name = os.tmpname() -- a unique name (the file it makes goes at once)
  os.remove(name)
  local image = ("%s/ublk-crash.%s.img"):format(dir, name:match("[^/]+$"))
  local marks_path = image .. ".marks"
  local list
  if o["--state"] then
    local st, why = crash.state(log, o["--state"])
    if not st then return nil, "crashtest: " .. why end
    list = function() local s = st st = nil return s end
  else
    list = crash.states(log, { seed = seed, states = n, torn = o["--torn"] })
  end
  local function again(id)
    local t = { "ublk-lua crashtest", quote(path), "--check", quote(o["--check"]) }
    if o["--base"] then t[#t + 1] = "--base " .. quote(o["--base"]) end
    t[#t + 1] = "--state " .. id
    return table.concat(t, " ")
  end
  local done, t0 = 0, os.time()
  for st in list do
    local ok, werr = crash.write_state(log, st, image, { base = o["--base"] })
    if not ok then return 1, "crashtest: " .. werr end
    local f = assert(io.open(marks_path, "w"))
    for _, m in ipairs(crash.marks(log, st)) do f:write(m, "\n") end
    f:close()
    local passed, code = run_check(o["--check"], image, marks_path, st.id)
    done = done + 1
    io.stdout:write(("state %d %s %s\n"):format(done, passed and "ok  " or "FAIL",
      crash.describe(log, st)))
    io.stdout:flush()
    if not passed then
      io.stdout:write(("crashtest: state %s fails the check (exit %s); image %s;"
        .. " check it again with:\n%s\n"):format(st.id, tostring(code), image, again(st.id)))
      os.remove(marks_path)
      return 1
    end
    os.remove(image)
    os.remove(marks_path)
  end
  io.stdout:write(("crashtest: %d states of %s pass (%d entries, %d epochs, %d s)\n"):format(
    done, path, #log.entries, #crash.epochs(log), os.time() - t0))
  return 0
end

local VERBS = { mark = mark, replay = replay, crashtest = crashtest }

function M.main(verb, argv)
  local o, words = parse(verb, argv, args.crash_options[verb])
  if o == nil and words == "help" then io.stdout:write(args.help[verb]) return 0 end
  if not o then complain(words .. " (try --help)") return 2 end
  local status, err = VERBS[verb](o, words)
  if status == nil then complain(err .. " (try --help)") return 2 end
  if err then complain(err) end
  return status
end

return M
