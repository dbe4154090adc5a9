-- ublk.cli_crash: the power-cut verbs (docs/crash-testing.md).
--   ublk-lua mark -n ID NAME
--   ublk-lua replay LOG --to MARK|ENTRY -o IMAGE [--base IMG]
--   ublk-lua crashtest LOG --check 'CMD {dev}' [--base IMG] [--seed S]
--                      [--states N] [--torn] [--reorder] [--lost zero|garbage]
--                      [--jobs J] [--bisect] [--json] [--state ID] [--dir DIR]
-- crashtest writes each crash state onto an image file and runs CMD with
-- {dev} replaced by its path, {marks} by a file listing the marks made
-- before the state's power cut (one a line) and {state} by its id.  It
-- stops at the first state whose CMD exits non-zero and prints the line
-- that rebuilds and checks exactly that state again; --bisect then
-- searches for the earliest epoch that fails.
local core = require "ublk.core"
local crash = require "ublk.crash"
local libc = require "ublk.libc"

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
  -- the process recording the log knows where its entries end: it marks
  -- (ublk.requests); with no server, the log is appended to here
  local state = require "ublk.state"
  local ok, err
  if state.server_alive(rec) then
    ok, err = require("ublk.requests").ask(id, "mark", words[1], rec)
  else
    ok, err = require("ublk.crash_log").mark(rec.log, words[1])
  end
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

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- ---- crashtest: checks run in the background, up to --jobs at once ----
--
-- Each check gets its own image (STEM.N.img, N counting every check this
-- run starts, so no two checks ever share a file) and runs as `sh -c CMD`,
-- a child of this process in a session of its own (core.spawn_command: its
-- process group can be killed whole, and it starts with no signal
-- blocked, though this process blocks the termination signals), its
-- output kept in a file and its exit status taken by waitpid.  A passing
-- check's files go as soon as it ends; a failing one's wait for its turn.
-- Results are reported in the states' order, so --jobs changes how fast,
-- never what is said: the first failing state in that order ends the run,
-- and what ran after it is dropped.  If the run itself fails (a state
-- that cannot be written, a signal), the checks still running are killed
-- and every file but a reported failure's image is removed.

local function start_check(ctx, st)
  ctx.seq = (ctx.seq or 0) + 1
  local image = ("%s.%d.img"):format(ctx.stem, ctx.seq)
  local ok, werr = crash.write_state(ctx.log, st, image, { base = ctx.base })
  if not ok then return nil, werr end
  local marks = image .. ".marks"
  local f = assert(io.open(marks, "w"))
  for _, m in ipairs(crash.marks(ctx.log, st)) do f:write(m, "\n") end
  f:close()
  local line = ctx.check:gsub("{dev}", function() return quote(image) end)
    :gsub("{marks}", function() return quote(marks) end)
    :gsub("{state}", function() return st.id end)
  local job = { st = st, image = image, marks = marks, out = image .. ".out", t0 = libc.clock() }
  local pid, serr = core.spawn_command({ "sh", "-c", line }, job.out)
  if not pid then
    os.remove(image)
    os.remove(marks)
    return nil, "cannot start the check: " .. serr
  end
  job.pid = pid
  return job
end

-- Removes a check's files; a failing image is kept, renamed to `keep`.
local function drop(job, keep)
  if keep then os.rename(job.image, keep) job.image = keep else os.remove(job.image) end
  os.remove(job.marks)
  os.remove(job.out)
end

-- Whether the check has ended: then its exit code (the shell's
-- convention, 128 + N for a death by signal N), time and output are the
-- job's.
local function finished(job)
  local how, n = libc.reap(job.pid)
  if not how then return false end
  job.pid = nil -- reaped
  job.code, job.seconds, job.output = how == "exit" and n or 128 + n, libc.clock() - job.t0,
    read_all(job.out)
  if job.code == 0 then drop(job) end
  return true
end

-- Kills a check still running (its whole session), reaps it and removes
-- its files.
local function abandon(job)
  if job.pid then
    libc.C.kill(-job.pid, 9)
    libc.reap(job.pid, true)
    job.pid = nil
  end
  drop(job)
end

-- Checks `states` in order; report(job) for each result until the first
-- failure, which is returned (its image kept as `keep`).  -> job | nil
-- | nil, nil, "ENAME: message" when a state cannot be written.
local STOPPED = {}

local function run(ctx, states, report, keep)
  local running, done, free = {}, {}, {}
  for slot = ctx.jobs, 1, -1 do free[#free + 1] = slot end
  -- err_at: the state that could not be written; those before it are
  -- still reported, so an earlier failure wins whatever --jobs is
  local nxt, head, failure, err, err_at = 1, 1, nil, nil, nil
  local ok, raised = pcall(function()
    while true do
      while not failure and not err and nxt <= #states and #free > 0 do
        local slot = table.remove(free)
        local job, werr = start_check(ctx, states[nxt])
        if not job then err, err_at = werr, nxt free[#free + 1] = slot break end
        job.i, job.slot = nxt, slot
        running[slot] = job
        nxt = nxt + 1
      end
      local progressed = false
      for slot, job in pairs(running) do
        if finished(job) then
          running[slot], done[job.i] = nil, job
          free[#free + 1] = slot
          progressed = true
        end
      end
      while not failure and done[head] do
        local job = done[head]
        done[head], head = nil, head + 1
        report(job)
        if job.code ~= 0 then failure = job drop(job, keep) end
      end
      if next(running) == nil and (failure or err or head > #states) then break end
      -- a termination signal ends the run (its checks killed), not the
      -- process: a sleep in an FFI call could not be interrupted
      if not progressed and core.wait_signal(10) then error(STOPPED, 0) end
    end
  end)
  for _, job in pairs(running) do abandon(job) end
  for _, job in pairs(done) do if job ~= failure then drop(job) end end
  if not ok and raised == STOPPED then
    return nil, nil, "stopped by a termination signal; the checks still running were killed"
  end
  if not ok then error(raised, 0) end
  if failure then return failure end
  if err then return nil, nil, ("%s (state %s)"):format(err, states[err_at].id) end
  return nil
end

local function crashtest(o, words)
  if #words ~= 1 or not o["--check"] then
    return nil, "crashtest: give LOG and --check 'CMD {dev}'"
  end
  local seed, serr = whole(o["--seed"] or 1, "--seed", 0)
  if not seed then return nil, "crashtest: " .. serr end
  local n, nerr = whole(o["--states"] or 16, "--states", 0)
  if not n then return nil, "crashtest: " .. nerr end
  local jobs, jerr = whole(o["--jobs"] or 1, "--jobs", 1)
  if not jobs or jobs > 256 then
    return nil, "crashtest: " .. (jerr or ("--jobs needs a whole number from 1 to 256, got '%s'"):format(o["--jobs"]))
  end
  local lost = o["--lost"]
  if lost and lost ~= "zero" and lost ~= "garbage" then
    return nil, ("crashtest: --lost is zero or garbage (what a lost block reads as), got '%s'"):format(lost)
  end
  if o["--bisect"] and o["--state"] then
    return nil, "crashtest: --bisect searches the epochs before a failure it finds; --state checks one state"
  end
  local path = words[1]
  local log, err = crash.read(path)
  if not log then return 1, "crashtest: " .. err end
  local dir = o["--dir"] or os.getenv("TMPDIR") or "/tmp"
  local name = os.tmpname() -- a unique name (the file it makes goes at once)
  os.remove(name)
  local mode = { torn = o["--torn"], reorder = o["--reorder"], lost = lost }
  local ctx = { log = log, base = o["--base"], check = o["--check"], jobs = jobs,
    stem = ("%s/ublk-crash.%s"):format(dir, name:match("[^/]+$")) }
  local states = {}
  if o["--state"] then
    local st, why = crash.state(log, o["--state"])
    if not st then return nil, "crashtest: " .. why end
    states[1] = st
  else
    for st in crash.states(log, setmetatable({ seed = seed, states = n }, { __index = mode })) do
      states[#states + 1] = st
    end
  end
  local function again(id)
    local t = { "ublk-lua crashtest", quote(path), "--check", quote(o["--check"]) }
    if o["--base"] then t[#t + 1] = "--base " .. quote(o["--base"]) end
    t[#t + 1] = "--state " .. id
    return table.concat(t, " ")
  end
  local json = o["--json"] and require("ublk.json")
  -- a check's output as JSON can carry it: valid UTF-8 (e2fsck prints
  -- the names a damaged state holds, bytes and all), a byte that starts
  -- no valid sequence as U+FFFD
  local function utf8(text)
    if not text:find("[\128-\255]") then return text end
    local out, i = {}, 1
    while i <= #text do
      local c = text:byte(i)
      local len = c < 0x80 and 1 or (c >= 0xc2 and c <= 0xdf) and 2 or (c >= 0xe0 and c <= 0xef) and 3
        or (c >= 0xf0 and c <= 0xf4) and 4 or 0
      for j = i + 1, i + len - 1 do
        local d = text:byte(j)
        if not d or d < 0x80 or d > 0xbf then len = 0 break end
      end
      if len > 0 then out[#out + 1], i = text:sub(i, i + len - 1), i + len
      else out[#out + 1], i = "\239\191\189", i + 1 end
    end
    return table.concat(out)
  end
  local function say(line) io.stdout:write(line, "\n") io.stdout:flush() end
  local t0, checked = libc.clock(), 0
  -- one line a state: how far (done/total), how fast, and what it is
  local function reporter(total, phase)
    local i = 0
    return function(job)
      i, checked = i + 1, checked + 1
      local ok = job.code == 0
      if json then
        say(json.encode({ state = job.st.id, phase = phase, n = i, total = total, kind = job.st.kind,
          epoch = job.st.epoch, ok = ok, exit = job.code, seconds = job.seconds, output = utf8(job.output) }))
        return
      end
      say(("state %d/%d %s (%.1f/s) %s"):format(i, total, ok and "ok  " or "FAIL",
        checked / math.max(libc.clock() - t0, 1e-3), crash.describe(log, job.st)))
      if job.output ~= "" then io.stdout:write(job.output) end
    end
  end
  local failed, _, werr = run(ctx, states, reporter(#states, "explore"), ctx.stem .. ".img")
  if werr then return 1, "crashtest: " .. werr end
  local summary = { log = path, total = #states, entries = #log.entries, epochs = #crash.epochs(log),
    jobs = jobs }
  if not failed then
    summary.result, summary.checked, summary.seconds = "pass", checked, libc.clock() - t0
    if json then say(json.encode({ summary = summary })) return 0 end
    say(("crashtest: %d states of %s pass (%d entries, %d epochs, %.0f s, %.1f states/s, %d job%s)")
      :format(checked, path, #log.entries, #crash.epochs(log), summary.seconds,
        checked / math.max(summary.seconds, 1e-3), jobs, jobs == 1 and "" or "s"))
    return 0
  end
  summary.result, summary.failed, summary.exit = "fail", failed.st.id, failed.code
  summary.image, summary.again = failed.image, again(failed.st.id)
  if not json then
    say(("crashtest: state %s fails the check (exit %s); image %s; check it again with:\n%s")
      :format(failed.st.id, tostring(failed.code), failed.image, again(failed.st.id)))
  end
  if o["--bisect"] then
    -- The earliest epoch whose own samples fail: a binary search over the
    -- epochs up to the failing one, each tried with the same seed, count
    -- and mode, drawn from it alone (ids "...@E").  It assumes what
    -- fails once keeps failing in later epochs; an epoch whose samples all
    -- pass moves the search later.
    local lo, hi, best = 1, failed.st.epoch, failed
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local cands = {}
      for k = 1, n do
        cands[#cands + 1] = crash.sample(log, seed, k, setmetatable({ epoch = mid }, { __index = mode }))
      end
      local f, _, berr = run(ctx, cands, reporter(#cands, "bisect"), ctx.stem .. ".earliest.img")
      if berr then return 1, "crashtest: " .. berr end
      if not json then
        say(("bisect: epoch %d of %d: %s"):format(mid, #crash.epochs(log),
          f and ("%s fails"):format(f.st.id) or ("%d samples pass"):format(#cands)))
      end
      if f then hi, best = mid, f else lo = mid + 1 end
    end
    summary.earliest = { epoch = hi, state = best.st.id, image = best.image, again = again(best.st.id) }
    if not json then
      say(("bisect: the earliest failing epoch is %d of %d: state %s; image %s; check it again with:\n%s")
        :format(hi, #crash.epochs(log), best.st.id, best.image, again(best.st.id)))
    end
  end
  summary.checked, summary.seconds = checked, libc.clock() - t0
  if json then say(json.encode({ summary = summary })) end
  return 1
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
