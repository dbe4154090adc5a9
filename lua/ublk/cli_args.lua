-- ublk.cli_args: the command line's words: the usage, each verb's help,
-- and the options of a verb parsed into a table (lua/ublk/cli.lua runs
-- them).  Exit status 2 for what this refuses.
local options = require "ublk.options"

local args = {}

-- "memory|null|file|nbd": the C backends, from their registry
local TYPES = {}
for i, b in ipairs((options.backends())) do TYPES[i] = b.name end
TYPES = table.concat(TYPES, "|")

args.usage = ([=[
usage: ublk-lua SCRIPT [ARGS...]
       ublk-lua add [-t TYPES [-s SIZE] [--OPTION VALUE]... [-q QUEUES]
                    [-d DEPTH] [--threads T] [-n ID] [-r RECOVERY] [--record LOG]]
                    [--restart N]
                    [SCRIPT [ARGS...]]
       ublk-lua list [-n ID] [--json]
       ublk-lua del -n ID | -a [--safe]
       ublk-lua recover -n ID [SCRIPT [ARGS...]]
       ublk-lua reload -n ID [SCRIPT [ARGS...]]
       ublk-lua quiesce -n ID
       ublk-lua resize -n ID SIZE [--force]
       ublk-lua stats -n ID [--json] [--watch SECONDS]
       ublk-lua stats --prom [-n ID] [--textfile FILE] [--watch SECONDS]
       ublk-lua stats --prom [-n ID] --listen ADDR
       ublk-lua features [--json]
       ublk-lua udev NODE
       ublk-lua mark -n ID NAME
       ublk-lua replay LOG --to MARK|ENTRY -o IMAGE [--base IMG]
       ublk-lua crashtest LOG --check 'CMD {dev}' [--base IMG] [--seed S] [--states N]
                    [--torn] [--reorder] [--lost zero|garbage] [--jobs J] [--bisect]
                    [--json] [--state ID]

SCRIPT alone: serves the block devices that SCRIPT describes in the
foreground until a termination signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT,
SIGUSR1, ...), then removes them.  SCRIPT returns a table of device
parameters, e.g.
  return { size = "256MiB", queues = 2, depth = 128, backend = "FIRST" }
(or a list of such tables), or creates devices with require "ublk".
ARGS reach the script as `...`.

  add       serve in the background; returns once every device is usable,
            one "dev id N: ..." line each (or the error, and no device);
            --restart N: a supervisor recovers the devices when the server
            dies from a signal, N times at most
  list      every ublk device on the machine, with its state and server
  del       remove a device (or every device ublk-lua made), whatever
            state its server is in
  recover   a new server for the devices whose server died with recovery
            on (QUIESCED), from the recorded script or SCRIPT
  stats     a device's IOPS, bandwidth, errors and latency percentiles
            (p50/p99/p99.9) per op, over 1 s or every SECONDS, and
            since its server started
  reload    replace a running server by a new one (SCRIPT, or the same
            script read again) without the devices going away
  quiesce   the server leaves its devices QUIESCED, their I/O waiting, for
            a later recover
  resize    a running device serves SIZE bytes from now on
  features  what this kernel's ublk driver can do
  udev      for the udev rule: the owner of a user's device node
            (docs/unprivileged.md)
  mark, replay, crashtest   power-cut testing of a recorded device
            (add --record LOG): docs/crash-testing.md

  -h, --help     show this help
  -V, --version  show the version
Environment: UBLK_LOG=error|warn|info|debug
  UBLK_STOP_TIMEOUT=SECONDS  after a signal, how long the script may take to
                 remove its devices before they are removed without it (5)
Exit status: 0 ok, 1 failure, 2 usage.  State: /run/ublk-lua (root), else
$XDG_RUNTIME_DIR/ublk-lua or /tmp/ublk-lua-UID.
]=]):gsub("TYPES", TYPES):gsub("FIRST", options.backends()[1].name)

-- A number option's rule: integral or not, its range, and its words for
-- the error.  Checked here, so that nan, inf, 1e300 or 2.5 never reach a
-- device id, a JSON record or a sleep.
local function number(integral, min, max, what)
  return function(v)
    local n = tonumber(v)
    if n and n == n and n >= min and n <= max and (not integral or n == math.floor(n)) then
      return n
    end
    return nil, ("needs %s from %s to %s, got '%s'"):format(what, tostring(min), tostring(max), v)
  end
end

-- The kernel numbers ublk devices below 2^20 (UBLK_MAX_UBLKS); queues and
-- depth have its limits (UBLK_MAX_NR_QUEUES, UBLK_MAX_QUEUE_DEPTH);
-- params.lua narrows them to this machine.  --watch: at least 0.1 s, so
-- that a tiny interval does not print a million lines a second.
local ID = number(true, 0, 1048575, "a device id")
local OPTS = {
  ["-n"] = { "id", ID }, ["-q"] = { "queues", number(true, 1, 4096, "a whole number of queues") },
  ["-d"] = { "depth", number(true, 1, 4096, "a whole queue depth") },
  ["--threads"] = { "threads", number(true, 1, 4096, "a whole number of threads") },
  ["-s"] = { "size" }, ["-t"] = { "type" }, ["-r"] = { "recovery" },
  ["--json"] = { "json", true }, ["-a"] = { "all", true },
  ["--watch"] = { "watch", number(false, 0.1, 86400, "seconds") },
  ["--restart"] = { "restart", number(true, 0, 1000000, "a whole number of restarts") },
  ["--safe"] = { "safe", true },
  ["-b"] = { "batch", true }, ["-g"] = { "need_get_data", true },
  ["--force"] = { "force", true },
  ["--prom"] = { "prom", true }, ["--textfile"] = { "textfile" },
  ["--listen"] = { "listen" }, ["--record"] = { "record" },
}
local ALLOWED = {
  add = { ["-n"] = 1, ["-q"] = 1, ["-d"] = 1, ["--threads"] = 1, ["-s"] = 1, ["-t"] = 1,
    ["-r"] = 1,
    ["--restart"] = 1, ["-b"] = 1, ["-g"] = 1, ["--record"] = 1 },
  list = { ["-n"] = 1, ["--json"] = 1 }, del = { ["-n"] = 1, ["-a"] = 1, ["--safe"] = 1 },
  recover = { ["-n"] = 1 }, reload = { ["-n"] = 1 }, features = { ["--json"] = 1 },
  quiesce = { ["-n"] = 1 }, resize = { ["-n"] = 1, ["--force"] = 1 },
  stats = { ["-n"] = 1, ["--json"] = 1, ["--watch"] = 1, ["--prom"] = 1, ["--textfile"] = 1,
    ["--listen"] = 1 },
}

-- b, or for a backend that loads a plugin (add -t plugin --path X.so) the
-- plugin's declaration, whose options the words after it may be; nil,
-- message when it cannot load.
local function plugin_of(b, argv)
  for _, o in ipairs(b.options) do
    if o.plugin then
      local flag, t = "--" .. o.name, {}
      for j = 2, #argv do
        local v = argv[j]:match("^" .. flag:gsub("%-", "%%-") .. "=(.*)$")
        if v then t[o.name] = v end
        if argv[j] == flag and argv[j + 1] then t[o.name] = argv[j + 1] end
      end
      local d, err = options.find(b.name, nil, t)
      if not d then return nil, ("add: %s %s: %s"):format(flag, t[o.name], err) end
      return d
    end
  end
  return b
end

-- The backend `add -t TYPE` names, wherever -t stands; nil, message when
-- it names none.
local function add_type(argv)
  for j = 2, #argv - 1 do
    if argv[j] == "-t" then
      local b = options.find(argv[j + 1])
      if b then return plugin_of(b, argv) end
      return nil, ("add: unknown backend '%s' (-t %s)"):format(argv[j + 1], TYPES)
    end
  end
end

-- `add -t TYPE --OPTION VALUE`, `--OPTION=VALUE`, and a bool option
-- alone (`--create`) for true: one of TYPE's declared options (ublk.options)
-- into o.options; -f FILE is --path FILE.  Returns how many words it took,
-- or nil, message.
local function backend_option(b, o, argv, i)
  local a = argv[i]
  local name, v = a:match("^%-%-([^=]+)=(.*)$")
  name = (name or a:sub(3)):gsub("%-", "_")
  if a == "-f" then name = "path" end
  local opt = b and b.by[name]
  if not opt then
    local known = {}
    for _, x in ipairs(b and b.options or {}) do known[#known + 1] = "--" .. x.name end
    if not b then return nil, ("add: unknown option '%s' (backend options follow -t TYPE)"):format(a) end
    return nil, ("add: unknown option '%s': the %s backend takes %s"):format(a, b.name,
      #known > 0 and table.concat(known, ", ") or "no options")
  end
  local took = 1
  if v == nil and opt.kind == "bool" then
    v = "true"
  elseif v == nil then
    v, took = argv[i + 1], 2
    if v == nil then return nil, ("add: %s needs a value"):format(a) end
  end
  o.options = o.options or {}
  o.options[name] = options.from_cli(opt, v)
  return took
end

function args.parse(verb, argv)
  local o, i = {}, 2
  local btype, terr
  if verb == "add" then
    btype, terr = add_type(argv)
    if terr then return nil, terr end
  end
  while argv[i] and argv[i]:sub(1, 1) == "-" do
    local a = argv[i]
    if a == "-h" or a == "--help" then
      return nil, "help", btype and args.help.add .. "\n" .. options.help(btype.name, nil, btype)
    end
    local spec = OPTS[a]
    if verb == "add" and not spec and (a:sub(1, 2) == "--" or a == "-f") then
      local took, err = backend_option(btype, o, argv, i)
      if not took then return nil, err end
      i = i + took
      spec = false
    end
    if spec == false then -- taken above
    elseif not spec or not ALLOWED[verb][a] then
      return nil, ("%s: unknown option '%s'"):format(verb, a)
    elseif spec[2] == true then
      o[spec[1]] = true
      i = i + 1
    else
      local v = argv[i + 1]
      if v == nil then return nil, ("%s: %s needs a value"):format(verb, a) end
      if spec[2] then
        local n, why = spec[2](v)
        if n == nil then return nil, ("%s: %s %s"):format(verb, a, why) end
        o[spec[1]] = n
      else
        o[spec[1]] = v
      end
      i = i + 2
    end
  end
  if o.recovery == "false" then o.recovery = false end
  o.script = argv[i]
  o.args = { select(i + 1, unpack(argv)) }
  if verb == "del" and not o.id == not o.all then return nil, "del: give -n ID or -a" end
  if o.textfile and not o.prom then return nil, "stats: --textfile needs --prom" end
  if o.listen and not o.prom then return nil, "stats: --listen needs --prom" end
  if o.listen and (o.textfile or o.watch) then
    return nil, "stats: --listen answers each scrape: no --textfile or --watch with it"
  end
  if (verb == "recover" or verb == "reload" or (verb == "stats" and not o.prom)
      or verb == "quiesce" or verb == "resize") and not o.id then
    return nil, verb .. ": give -n ID"
  end
  if verb == "add" and not o.script == not o.type then
    return nil, "add: give a SCRIPT or -t " .. TYPES
  end
  if (verb == "list" or verb == "features" or verb == "del" or verb == "stats"
      or verb == "quiesce") and o.script then
    return nil, ("%s: unexpected argument '%s'"):format(verb, o.script)
  end
  return o
end

-- `ublk-lua VERB --help`
args.help = {
  add = [=[
usage: ublk-lua add [--restart N] SCRIPT [ARGS...]
       ublk-lua add [--restart N] -t TYPE [-s SIZE] [--OPTION VALUE]...
                    [-q QUEUES] [-d DEPTH] [--threads T] [-n ID]
                    [-r reissue|queue|fail|false] [-b]
Serves in the background and returns once every device is usable, printing
"dev id N: /dev/ublkbN SIZE, Q queues x D, BACKEND, pid P" for each; or the
script's error, exit 1, and no device.  Output goes to /run/ublk-lua/server.log.
  -t TYPE   a device without a script: ]=] .. TYPES .. "\n" .. [=[
  -s SIZE   its size (e.g. 1GiB)           -q, -d    queues, depth per queue
  --OPTION VALUE  one of TYPE's options (`add -t TYPE --help` lists them;
            -f FILE is --path FILE)
  -n ID     the device id to ask for       -r        recovery (default reissue)
  --threads T  threads a queue, each with its ring and every T-th tag
            (threads = T, Linux 6.16+)
  -b        batch I/O (batch = true, Linux 7.0+)
  -g        a write's data fetched by a second command (need_get_data = true;
            the tag's-buffer copy mode: e.g. -t memory --copy buffer)
  --record LOG  log every write and flush to LOG (a new file; docs/crash-testing.md)
  --restart N  a supervisor recovers the devices when the server dies from a
               signal, N times at most
]=],
  list = [=[
usage: ublk-lua list [-n ID] [--json]
Every ublk device on the machine as the kernel reports it (state, server pid,
queues, depth, size, block size, flags), and for ublk-lua's own its server,
script, backend, recovery and store.
]=],
  del = [=[
usage: ublk-lua del -n ID | -a [--safe]
Removes device ID (-a: every device ublk-lua made), whatever its server's
state: a running server is asked to end (SIGTERM, SIGKILL if it does not),
a dead one's device is deleted directly.  Never waits on a disk still held.
--safe: leave a device whose disk is open (mounted, in use) alone and say
who has it, exit 1; the kernel stops the others atomically (TRY_STOP_DEV,
Linux 7.0+; refused on older kernels).
]=],
  recover = [=[
usage: ublk-lua recover -n ID [SCRIPT [ARGS...]]
A new server, in the background, for device ID and every other device its
dead server served (they are QUIESCED or FAIL_IO: recovery was on), from the
recorded script or SCRIPT.  The I/O that waited is served; data kept in
/dev/shm (memory backend, ublk.shared) is found again.
]=],
  reload = [=[
usage: ublk-lua reload -n ID [SCRIPT [ARGS...]]
Replaces the running server of device ID by a new one (SCRIPT, or the same
script read again) without the devices going away: edit a Lua backend,
reload, keep testing with the filesystem still mounted.  Needs recovery on,
on every device of that server.
]=],
  quiesce = [=[
usage: ublk-lua quiesce -n ID
The server of device ID leaves it, and every other device it serves,
QUIESCED: new I/O waits, nothing fails, until `ublk-lua recover -n ID`
starts a server that serves it.  Needs recovery on.  QUIESCE_DEV (Linux
6.16+) lets the I/O in flight finish first; on older kernels the server
leaves as a crash would, so the device needs recovery = "reissue" there
(the I/O then in flight is served again).
]=],
  resize = [=[
usage: ublk-lua resize -n ID SIZE [--force]
Device ID serves SIZE bytes (e.g. 2GiB) from now on, without going away:
its server grows the backend (memory; a file, which grows; a block device
or an NBD export only as far as it goes), then the kernel's disk
(UPDATE_SIZE, Linux 6.16+).  A smaller SIZE cuts the data past it: refused
unless --force (shrink the filesystem on it first).  Then e.g. resize2fs.
]=],
  stats = [=[
usage: ublk-lua stats -n ID [--json] [--watch SECONDS]
Requests, bytes, IOPS, bandwidth, errors and latency percentiles (p50/p99/
p99.9, the server's part of each request) per op over the last second (or
every SECONDS until a signal), and the same since the server started;
read from the server's shared counters, without asking it anything.
--json: the last interval's figures, and the totals under "total".

usage: ublk-lua stats --prom [-n ID] [--textfile FILE] [--watch SECONDS]
The counters of device ID (or of every device ublk-lua serves) in the
Prometheus text format: requests per op, failed requests and bytes per
queue, the latency histogram per kind.  --textfile FILE: written there
instead (a new file renamed over it, as node_exporter's textfile collector
wants), every SECONDS with --watch.

usage: ublk-lua stats --prom [-n ID] --listen ADDR
The same text on GET /metrics, read afresh at each scrape, until a
termination signal: a Prometheus target.  ADDR: HOST:PORT (127.0.0.1:9850),
[HOST]:PORT for IPv6, or a unix socket's path (a word with a '/').
]=],
  features = [=[
usage: ublk-lua features [--json]
The kernel's ublk features by name, and which of them ublk-lua uses.
]=],
  mark = [=[
usage: ublk-lua mark -n ID NAME
Appends mark NAME to the log of recorded device ID (add --record LOG).
]=],
  replay = [=[
usage: ublk-lua replay LOG --to MARK|ENTRY -o IMAGE [--base IMG]
Writes the disk as it was after entry ENTRY (or the last mark MARK) of LOG onto
IMAGE: a copy of IMG (the disk the recording started from), or zeroes.
]=],
  crashtest = [=[
usage: ublk-lua crashtest LOG --check 'CMD {dev}' [--base IMG] [--seed S]
                          [--states N] [--torn] [--reorder] [--lost zero|garbage]
                          [--jobs J] [--bisect] [--json] [--state ID] [--dir DIR]
Checks the crash states of LOG: every FLUSH boundary, then N (16) samples of
seed S (1) within an epoch; --torn tears writes (each block old or new),
--reorder lands the epoch's writes in a shuffled order, --lost makes a lost
block read as zeroes or garbage instead of its old bytes; --state ID checks
only that one.  Each is written onto an image in DIR (/tmp) and CMD runs with
{dev} its path, {marks} a file of the marks made before its power cut, {state}
its id; J checks at once (1).  Stops at the first failing state and prints the
line that checks it again; --bisect then searches the epochs before it for the
earliest that fails.  --json: a JSON object a line, one a state, then a summary.
]=],
}

-- The power-cut verbs' options (cli_crash.lua parses them: its words come
-- in any order), name -> true for one that takes no value.
args.crash_options = {
  mark = { ["-n"] = false },
  replay = { ["--to"] = false, ["-o"] = false, ["--base"] = false },
  crashtest = { ["--check"] = false, ["--base"] = false, ["--seed"] = false,
    ["--states"] = false, ["--torn"] = true, ["--reorder"] = true, ["--lost"] = false,
    ["--jobs"] = false, ["--bisect"] = true, ["--json"] = true, ["--state"] = false,
    ["--dir"] = false },
}

-- The verbs in the order the usage names them, and each verb's options,
-- { name, takes_value } in name order: what the man page and the shell
-- completion are made from (contrib/man.lua, contrib/completion.lua).
function args.verbs()
  local verbs = {}
  for verb in pairs(ALLOWED) do verbs[#verbs + 1] = verb end
  for verb in pairs(args.crash_options) do verbs[#verbs + 1] = verb end
  table.sort(verbs, function(a, b)
    return args.usage:find("ublk-lua " .. a, 1, true) < args.usage:find("ublk-lua " .. b, 1, true)
  end)
  return verbs
end

function args.options(verb)
  local out = {}
  for name in pairs(ALLOWED[verb] or {}) do out[#out + 1] = { name, OPTS[name][2] ~= true } end
  for name, flag in pairs(args.crash_options[verb] or {}) do out[#out + 1] = { name, not flag } end
  table.sort(out, function(a, b) return a[1] < b[1] end)
  return out
end

return args
