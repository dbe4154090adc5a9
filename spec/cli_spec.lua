-- The ublk-lua command on the host: options, and bad scripts refused
-- before any kernel call (these need no ublk driver).
local shell = require "shell"

local function run(args) return shell.run("build/ublk-lua " .. args) end

local function script(text)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

describe("ublk-lua command", function()
  it("prints its version", function()
    local rc, out = run("--version")
    assert.are.equal(0, rc)
    assert.matches("^ublk%-lua %d+%.%d+%.%d+\n$", out)
  end)

  it("prints usage with --help and without arguments", function()
    local rc, out = run("--help")
    assert.are.equal(0, rc)
    assert.matches("usage: ublk%-lua SCRIPT", out)
    rc, out = run("")
    assert.are.equal(2, rc)
    assert.matches("usage:", out)
  end)

  it("gives each verb its own --help, and exit 2 for a verb used wrongly", function()
    for _, verb in ipairs({ "add", "list", "del", "recover", "reload", "stats", "features",
        "quiesce", "resize" }) do
      local rc, out = run(verb .. " --help")
      assert.are.equal(0, rc, verb)
      assert.matches("^usage: ublk%-lua " .. verb, out)
    end
    for args, says in pairs({
      ["del"] = "del: give %-n ID or %-a", ["del -n 1 -a"] = "del: give %-n ID or %-a",
      ["recover"] = "recover: give %-n ID", ["stats -n 1 --watch 0"] = "%-%-watch needs seconds",
      ["list -x"] = "list: unknown option '%-x'", ["add"] = "add: give a SCRIPT or %-t",
      ["add -t memory x.lua"] = "add: give a SCRIPT or %-t", ["list -n"] = "%-n needs a value",
      ["del -n one"] = "%-n needs a device id from 0 to 1048575, got 'one'",
      ["features extra"] = "unexpected argument",
      ["quiesce"] = "quiesce: give %-n ID", ["quiesce -n 1 x"] = "unexpected argument 'x'",
      ["resize -n 1"] = "resize: give %-n ID SIZE", ["resize 1GiB"] = "resize: give %-n ID",
      ["resize -n 1 12parsecs"] = "resize: SIZE '12parsecs': unknown unit",
      ["resize -n 1 1GiB --forc"] = "resize: unexpected argument '%-%-forc'",
    }) do
      local rc, out = run(args)
      assert.are.equal(2, rc, args)
      assert.matches(says, out)
    end
  end)

  describe("add -t TYPE: the backend's options, from its declaration in C", function()
    local args = require "ublk.cli_args"
    local core = require "ublk.core"

    it("takes --OPTION VALUE, --OPTION=VALUE, a bool alone, and -f as --path", function()
      local o = assert(args.parse("add", { "add", "--uri", "nbd://h/x", "-t", "nbd",
        "--timeout", "2.5", "--connections=3", "--connect-timeout", "1" }))
      assert.are.same({ uri = "nbd://h/x", timeout = 2.5, connections = 3, connect_timeout = 1 },
        o.options)
      o = assert(args.parse("add", { "add", "-t", "file", "-f", "/x", "--create",
        "--direct=false", "-s", "1M" }))
      assert.are.same({ path = "/x", create = true, direct = false }, o.options)
    end)

    it("takes -b and -g as batch and need_get_data, beside the backend's options", function()
      local o = assert(args.parse("add", { "add", "-t", "memory", "--copy", "buffer", "-g",
        "-s", "1M" }))
      assert.is_true(o.need_get_data)
      assert.is_nil(o.batch)
      assert.are.same({ copy = "buffer" }, o.options)
      assert.is_true(assert(args.parse("add", { "add", "-t", "null", "-b", "-s", "1M" })).batch)
    end)

    it("refuses another backend's option naming the backend's own, and an unknown TYPE", function()
      for cmd, says in pairs({
        ["add -t memory -s 1M --uri nbd://h/"] =
          "add: unknown option '%-%-uri': the memory backend takes %-%-copy, %-%-store",
        ["add -t null -s 1M --store /x"] =
          "add: unknown option '%-%-store': the null backend takes %-%-copy",
        ["add -t nul -s 1M"] = "add: unknown backend 'nul' %(%-t memory|null|file|nbd|rbd|plugin%)",
        ["add --path /x"] = "add: unknown option '%-%-path' %(backend options follow %-t TYPE%)",
        ["add -t nbd --uri"] = "add: %-%-uri needs a value",
      }) do
        local rc, out = run(cmd)
        assert.are.equal(2, rc, cmd)
        assert.matches(says, out, 1, false, cmd)
      end
      -- a value the option does not take: the parameter's refusal, exit 1
      local rc, out = run("add -t null -s 1M --copy ring")
      assert.are.equal(1, rc, out)
      assert.matches('copy.* must be "buffer", "inline", "auto_reg", "register" or '
        .. '"auto_reg_fallback"', out)
    end)

    it("lists every declared option in add -t TYPE --help", function()
      for _, b in ipairs(core.backends()) do
        local rc, out = run("add -t " .. b.name .. " --help")
        assert.are.equal(0, rc, b.name)
        assert.matches("Options of the " .. b.name .. " backend", out, 1, true)
        for _, o in ipairs(b.options) do
          assert.matches("--" .. o.name, out, 1, true)
          assert.matches(o.help, out, 1, true)
        end
      end
    end)
  end)

  it("refuses, by option and value, every number that is not finite, whole or in range", function()
    local cases = {
      { "add -t memory -s 1MiB -n nan", "add: %-n needs a device id from 0 to 1048575, got 'nan'" },
      { "add -t memory -s 1MiB -n 2.5", "%-n needs a device id from 0 to 1048575, got '2.5'" },
      { "add -t memory -s 1MiB -n 1048576", "%-n needs a device id .*got '1048576'" },
      { "add -t memory -s 1MiB -q inf", "add: %-q needs a whole number of queues from 1 to 4096, got 'inf'" },
      { "add -t memory -s 1MiB -q 0", "%-q needs .*got '0'" },
      { "add -t memory -s 1MiB -d -inf", "add: %-d needs a whole queue depth from 1 to 4096, got '%-inf'" },
      { "add -t memory -s 1MiB -d 1e300", "%-d needs .*got '1e300'" },
      { "add -t memory -s 1MiB --restart nan", "add: %-%-restart needs a whole number of restarts from 0 to 1000000, got 'nan'" },
      { "add -t memory -s 1MiB --restart 1.5", "%-%-restart needs .*got '1.5'" },
      { "list -n nan", "list: %-n needs a device id .*got 'nan'" },
      { "list -n -1", "list: %-n needs a device id .*got '%-1'" },
      { "del -n inf", "del: %-n needs a device id .*got 'inf'" },
      { "recover -n 0x1p70", "recover: %-n needs a device id .*got '0x1p70'" },
      { "stats -n 1 --watch nan", "stats: %-%-watch needs seconds from 0.1 to 86400, got 'nan'" },
      { "stats -n 1 --watch inf", "%-%-watch needs seconds .*got 'inf'" },
      { "stats -n 1 --watch 1e300", "%-%-watch needs seconds .*got '1e300'" },
      { "stats -n 1 --watch 1e-300", "%-%-watch needs seconds .*got '1e%-300'" },
      { "stats -n 1 --watch 0.0001", "%-%-watch needs seconds .*got '0.0001'" },
    }
    for _, c in ipairs(cases) do
      local rc, out = run(c[1])
      assert.are.equal(2, rc, c[1])
      assert.matches(c[2], out, 1, false, c[1])
    end
  end)

  it("says a device has no statistics when nothing serves it", function()
    local rc, out = run("stats -n 4711")
    assert.are.equal(1, rc)
    assert.matches("device 4711: no statistics", out)
  end)

  it("udev: takes one ublk node's name, and says when it is none (exit 2)", function()
    for _, args in ipairs({ "udev", "udev sda", "udev ublkb", "udev ublkb1 ublkc1" }) do
      local rc, out = run(args)
      assert.are.equal(2, rc, args)
      assert.matches("udev", out, 1, true)
    end
    assert.matches("'sda' is not the name of a ublk node", select(2, run("udev sda")), 1, true)
  end)

  it("refuses an unknown option", function()
    local rc, out = run("--frobnicate")
    assert.are.equal(2, rc)
    assert.matches("unknown option '%-%-frobnicate'", out)
  end)

  it("refuses a missing script in one line", function()
    local rc, out = run("/nonexistent.lua")
    assert.are.equal(1, rc)
    assert.matches("^ublk%-lua: cannot open /nonexistent%.lua", out)
  end)

  it("names the field, value and rule of a bad parameter", function()
    local rc, out = run(script('return { size = "1MiB", queues = 0 }'))
    assert.are.equal(1, rc)
    assert.matches("%.lua: ublk: bad parameter 'queues' = 0: must be an integer from 1 to %d+\n$", out)
  end)

  it("names a misspelt parameter", function()
    local rc, out = run(script('return { size = "1MiB", dpeth = 4 }'))
    assert.are.equal(1, rc)
    assert.matches("unknown parameter 'dpeth' %(did you mean 'depth'%?%)", out)
  end)

  it("refuses a script that returns something else than parameters", function()
    local rc, out = run(script('return 42'))
    assert.are.equal(1, rc)
    assert.matches("returned a number", out)
  end)

  it("passes its arguments to the script", function()
    local rc, out = run(script('local a, b = ...; error(a .. "+" .. b, 0)') .. " one two")
    assert.are.equal(1, rc)
    assert.matches("one%+two", out)
  end)

  it("takes a mistyped verb for a verb, not a script, when no such file exists", function()
    local rc, out = run("lsit")
    assert.are.equal(2, rc)
    assert.are.equal("ublk-lua: unknown command 'lsit' (did you mean list?)\n", out)
    rc, out = run("recovr -n 1")
    assert.are.equal(2, rc)
    assert.are.equal("ublk-lua: unknown command 'recovr' (did you mean recover?)\n", out)
    rc, out = run("frobnicate")
    assert.are.equal(2, rc)
    assert.matches("^ublk%-lua: unknown command 'frobnicate', and no such script %(commands: add, "
      .. "del, features, list, quiesce, recover, reload, resize, stats; try %-%-help%)\n$", out)
    -- a word with a dot or a slash is a script's path, whatever it looks like
    rc, out = run("lsit.lua")
    assert.are.equal(1, rc)
    assert.matches("cannot open .*lsit%.lua", out)
  end)

  it("says clearly when the kernel has no ublk driver", function()
    local f = io.open("/dev/ublk-control")
    if f then f:close(); pending("this kernel has ublk: covered by the guest specs"); return end
    local rc, out = run("examples/mydisk.lua")
    assert.are.equal(1, rc)
    assert.matches("/dev/ublk%-control not found", out)
    -- list does not answer "nothing" (the guest spec checks "no ublk devices")
    rc, out = run("list")
    assert.are.equal(1, rc)
    assert.are.equal("ublk-lua: no ublk driver (modprobe ublk_drv)\n", out)
    rc, out = run("list --json")
    assert.are.equal(1, rc)
    assert.are.equal("ublk-lua: no ublk driver (modprobe ublk_drv)\n", out)
  end)
end)
