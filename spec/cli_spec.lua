-- The ublk-lua command on the host: options, and bad scripts refused
-- before any kernel call (these need no ublk driver).
local function run(args)
  local p = io.popen("build/ublk-lua " .. args .. " 2>&1; echo \"__rc=$?\"")
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return tonumber(rc), body
end

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
    for _, verb in ipairs({ "add", "list", "del", "recover", "reload", "stats", "features" }) do
      local rc, out = run(verb .. " --help")
      assert.are.equal(0, rc, verb)
      assert.matches("^usage: ublk%-lua " .. verb, out)
    end
    for args, says in pairs({
      ["del"] = "del: give %-n ID or %-a", ["del -n 1 -a"] = "del: give %-n ID or %-a",
      ["recover"] = "recover: give %-n ID", ["stats -n 1 --watch 0"] = "%-%-watch needs seconds",
      ["list -x"] = "list: unknown option '%-x'", ["add"] = "add: give a SCRIPT or %-t",
      ["add -t memory x.lua"] = "add: give a SCRIPT or %-t", ["list -n"] = "%-n needs a value",
      ["del -n one"] = "%-n needs a number, got 'one'", ["features extra"] = "unexpected argument",
    }) do
      local rc, out = run(args)
      assert.are.equal(2, rc, args)
      assert.matches(says, out)
    end
  end)

  it("says a device has no statistics when nothing serves it", function()
    local rc, out = run("stats -n 4711")
    assert.are.equal(1, rc)
    assert.matches("device 4711: no statistics", out)
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

  it("says clearly when the kernel has no ublk driver", function()
    local f = io.open("/dev/ublk-control")
    if f then f:close(); pending("this kernel has ublk: covered by the guest specs"); return end
    local rc, out = run("examples/mydisk.lua")
    assert.are.equal(1, rc)
    assert.matches("/dev/ublk%-control not found", out)
  end)
end)
