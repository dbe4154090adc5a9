-- ublk.cli: `ublk-lua ARGS...`: the verbs (add, list, del, recover,
-- reload, quiesce, resize, features, stats: cli_admin.lua, cli_daemon.lua,
-- ...), the crash-testing verbs (cli_crash.lua), and a script to serve
-- (cli_serve.lua) when the first word is none of them.
local ublk = require "ublk"
local json = require "ublk.json"
local args = require "ublk.cli_args"
local serving = require "ublk.cli_serve"

local cli = {}
local serve, say, complain = serving.serve, serving.say, serving.complain

local VERBS = {
  add = function(o) return require("ublk.cli_daemon").add(o) end,
  recover = function(o) return require("ublk.cli_daemon").recover(o) end,
  reload = function(o) return require("ublk.cli_daemon").reload(o) end,
  quiesce = function(o) return require("ublk.cli_quiesce").run(o) end,
  resize = function(o) return require("ublk.cli_resize").run(o) end,
  list = function(o) return require("ublk.cli_admin").list(o) end,
  del = function(o) return require("ublk.cli_admin").del(o) end,
  features = function(o) return require("ublk.cli_admin").features(o) end,
  stats = function(o) return require("ublk.cli_admin").stats(o) end,
}

-- A first word that is no file and looks like no path (no '/', no '.')
-- was meant as a verb: the message says so, not "cannot open".
local function unknown_verb(word)
  if word:find("[/.]") or io.open(word) then return nil end
  local best, best_d
  for verb in pairs(VERBS) do
    local d = require("ublk.check").distance(word:lower(), verb)
    if d <= 2 and (not best_d or d < best_d or (d == best_d and verb < best)) then
      best, best_d = verb, d
    end
  end
  if best then return ("unknown command '%s' (did you mean %s?)"):format(word, best) end
  local names = {}
  for verb in pairs(VERBS) do names[#names + 1] = verb end
  table.sort(names)
  return ("unknown command '%s', and no such script (commands: %s; try --help)"):format(word,
    table.concat(names, ", "))
end

function cli.main(argv)
  local first = argv[1]
  if first == "--supervise" then -- add --restart (cli_supervise.lua)
    local what = json.decode(os.getenv("UBLK_SERVE") or "")
    if type(what) ~= "table" then complain("--supervise: no UBLK_SERVE") return 2 end
    return require("ublk.cli_supervise").run(what)
  elseif first == "--serve" then -- a background server (cli_daemon.lua)
    local what = json.decode(os.getenv("UBLK_SERVE") or "")
    if type(what) ~= "table" then complain("--serve: no UBLK_SERVE") return 2 end
    return serve(what)
  elseif first == nil then
    io.stderr:write(args.usage)
    return 2
  elseif first == "-h" or first == "--help" then
    io.stdout:write(args.usage)
    return 0
  elseif first == "-V" or first == "--version" then
    say("ublk-lua %s", ublk.version)
    return 0
  elseif first == "udev" then -- run by the udev rule (docs/unprivileged.md)
    if argv[3] then complain("usage: ublk-lua udev NODE") return 2 end
    return require("ublk.cli_admin").udev(argv[2])
  elseif first == "mark" or first == "replay" or first == "crashtest" then
    return require("ublk.cli_crash").main(first, argv) -- docs/crash-testing.md
  elseif VERBS[first] then
    local o, err, text = args.parse(first, argv)
    if err == "help" then io.stdout:write(text or args.help[first]) return 0 end
    if not o then complain(err .. " (try --help)") return 2 end
    return VERBS[first](o)
  elseif first:sub(1, 1) == "-" then
    complain(("unknown option '%s' (try --help)"):format(first))
    return 2
  end
  local unknown = unknown_verb(first)
  if unknown then complain(unknown) return 2 end
  return serve({ script = first, args = { select(2, unpack(argv)) } })
end

return cli
