-- `make install` into a scratch DESTDIR: what it puts where, the man page
-- made from the --help text (every line of it, in order), the bash
-- completion made from the same tables as the option parser, the unit
-- naming the installed executable and docs, a LICENSE that is the
-- rockspec's.
local sh = require("shell").run

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("*a")
  f:close()
  return s
end

describe("make install", function()
  local dest, prefix = nil, "/opt/ublk-lua-spec"

  setup(function()
    dest = os.tmpname()
    os.remove(dest)
    local rc, out = sh(("make -s install DESTDIR=%s PREFIX=%s"):format(dest, prefix))
    assert.are.equal(0, rc, out)
  end)
  teardown(function() os.execute("rm -rf " .. dest) end)

  it("puts the executable, modules, man page, completion, unit, docs and examples in place", function()
    for _, p in ipairs({ "bin/ublk-lua", "lib/lua/5.1/ublk/core.so", "share/lua/5.1/ublk/cli.lua",
      "share/man/man1/ublk-lua.1", "share/bash-completion/completions/ublk-lua",
      "lib/systemd/system/ublk-lua@.service", "share/doc/ublk-lua/README.md",
      "share/doc/ublk-lua/LICENSE", "share/doc/ublk-lua/CHANGELOG.md",
      "share/doc/ublk-lua/docs/backends.md", "share/doc/ublk-lua/examples/mydisk.lua" }) do
      assert.truthy(io.open(dest .. prefix .. "/" .. p), p)
    end
  end)

  it("installs a man page that says every line of --help and of each verb's --help, in order", function()
    local page = read(dest .. prefix .. "/share/man/man1/ublk-lua.1")
    -- the page's text as troff prints it in its no-fill blocks
    local text = page:gsub("\\&", ""):gsub("\\e", "\\")
    local function has_all(help, what)
      local at = 1
      for line in help:gmatch("[^\n]+") do
        local s, e = text:find("\n" .. line .. "\n", at - 1, true)
        assert.truthy(s, ("%s: the man page lacks the line %q"):format(what, line))
        at = e
      end
    end
    local _, usage = sh("build/ublk-lua --help")
    has_all(usage, "--help")
    local args = require "ublk.cli_args"
    for _, verb in ipairs(args.verbs()) do
      local _, help = sh("build/ublk-lua " .. verb .. " --help")
      has_all(help, verb .. " --help")
      assert.matches("\n%.SH " .. verb:upper() .. "\n", page)
    end
    assert.matches('^%.TH UBLK%-LUA 1 "" "ublk%-lua %d+%.%d+%.%d+"', page)
    if sh("command -v man") == 0 then
      local rc, out = sh("MANWIDTH=100 man -l " .. dest .. prefix .. "/share/man/man1/ublk-lua.1")
      assert.are.equal(0, rc, out)
      assert.matches("ublk%-lua add %[%-t memory|null|file|nbd", out)
    end
  end)

  it("completes verbs, each verb's options and device ids in bash", function()
    local file = dest .. prefix .. "/share/bash-completion/completions/ublk-lua"
    -- what bash offers after the words given (the last one being typed)
    local driver = os.tmpname()
    local f = assert(io.open(driver, "w"))
    f:write('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ublk_lua\n'
      .. 'printf "%s\\n" "${COMPREPLY[@]}"\n')
    f:close()
    local function complete(...)
      local quoted = {}
      for i, w in ipairs({ ... }) do quoted[i] = "'" .. w .. "'" end
      local rc, out = sh(("bash %s %s %s"):format(driver, file, table.concat(quoted, " ")))
      assert.are.equal(0, rc, out)
      local set = {}
      for w in out:gmatch("[^\n]+") do set[w] = true end
      return set
    end
    local args = require "ublk.cli_args"
    local verbs = complete("ublk-lua", "")
    for _, verb in ipairs(args.verbs()) do
      assert.truthy(verbs[verb], verb)
      local opts = complete("ublk-lua", verb, "-")
      for _, o in ipairs(args.options(verb)) do assert.truthy(opts[o[1]], verb .. " " .. o[1]) end
    end
    assert.are.same({ list = true }, complete("ublk-lua", "li"))
    assert.truthy(complete("ublk-lua", "add", "-t", "")["nbd"])
    assert.truthy(complete("ublk-lua", "stats", "--w")["--watch"])
    -- device ids come from /sys/class/ublk-char (none on a host without ublk)
    assert.matches("/sys/class/ublk%-char/ublkc%*", read(file))
    os.remove(driver)
  end)

  it("installs the unit naming the installed executable and docs, and a LICENSE that is the rockspec's", function()
    local unit = read(dest .. prefix .. "/lib/systemd/system/ublk-lua@.service")
    assert.matches("\nExecStart=" .. prefix:gsub("%-", "%%-") .. "/bin/ublk%-lua /etc/ublk%-lua/%%i%.lua\n", unit)
    local doc = unit:match("\nDocumentation=file://(%S+)")
    assert.are.equal(prefix .. "/share/doc/ublk-lua/README.md", doc)
    assert.truthy(io.open(dest .. doc), doc)
    local license = read("ublk-lua-scm-1.rockspec"):match('license = "([^"]+)"')
    assert.are.equal("MIT", license)
    assert.matches("^MIT License\n", read("LICENSE"))
    assert.matches("\n## 0%.2%.0 ", read("CHANGELOG.md"))
  end)

  it("installs the udev rule for users' devices, running the installed executable", function()
    local rules = read(dest .. prefix .. "/lib/udev/rules.d/70-ublk-lua.rules")
    assert.matches('KERNEL=="ublk-control", MODE="0666"', rules, 1, true)
    assert.matches(('IMPORT{program}="%s/bin/ublk-lua udev %%k"'):format(prefix), rules, 1, true)
    assert.falsy(rules:find("/usr/local/bin", 1, true))
  end)
end)
