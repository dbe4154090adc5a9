-- The ublk-lua command: serves the examples, removes its devices on
-- SIGINT and SIGTERM, and refuses bad scripts before any device exists.
local G = require "guest"

describe("#guest cli", function()
  local procs = {}
  after_each(function() G.end_all(procs) end)

  for _, sig in ipairs({ "TERM", "INT" }) do
    it("serves examples/mydisk.lua and removes the device on SIG" .. sig, function()
      local p, path = G.serve("examples/mydisk.lua")
      procs[#procs + 1] = p
      assert.matches("ready %(256 MiB, 2 queues x 128, memory, [^,]*user copy%)", p:out())
      local md5 = G.write_random_at(path, 512, 8192)
      assert.are.equal(md5, G.md5_at(path, 512, 8192))
      p:kill(sig)
      assert.are.equal(0, p:wait())
      assert.matches(path .. " removed", p:out())
      assert.are.equal("", p:err())
    end)
  end

  it("serves examples/null.lua", function()
    local p, path = G.serve("examples/null.lua")
    procs[#procs + 1] = p
    G.must("dd if=/dev/zero of=%s bs=64k count=16 oflag=direct status=none", path)
    G.must("dd if=%s of=/dev/null bs=64k count=16 iflag=direct status=none", path)
    p:kill("TERM")
    assert.are.equal(0, p:wait())
  end)

  it("serves examples/file.lua with the file from its arguments", function()
    local img = "/tmp/ublk-cli-file.img"
    G.must("rm -f %s && truncate -s 32M %s", img, img)
    local p, path = G.serve("examples/file.lua " .. img)
    procs[#procs + 1] = p
    local md5 = G.write_random_at(path, 4096 + 512, 65536)
    p:kill("TERM")
    assert.are.equal(0, p:wait())
    -- the bytes are in the file itself, at the same offset
    assert.are.equal(md5, G.must("dd if=%s bs=512 skip=9 count=128 status=none | md5sum", img):match("%x+"))
    os.remove(img)
  end)

  it("serves several devices from one script and removes them all", function()
    local script = "/tmp/ublk-two.lua"
    G.write_file(script, 'return { { size = "8MiB" }, { size = "4MiB", backend = "null" } }')
    local p = G.spawn(script)
    procs[#procs + 1] = p
    assert(p:wait_output("ready.*\n.*ready"))
    assert.are.equal(2, #G.leftovers() / 2)
    p:kill("INT")
    assert.are.equal(0, p:wait())
  end)

  it("lets a script drive the module itself", function()
    local script = "/tmp/ublk-module.lua"
    G.write_file(script, [[
      local ublk = require "ublk"
      local size = ...
      local dev = assert(ublk.device{ size = size, queues = 1 })
      assert(dev:start())
    ]])
    local p, _ = G.serve(script .. " 4MiB")
    procs[#procs + 1] = p
    assert.matches("ready %(4 MiB, 1 queue x 128, memory, [^,]*user copy%)", p:out())
    p:kill("TERM")
    assert.are.equal(0, p:wait())
  end)

  it("refuses a script with a syntax error, naming file and line", function()
    local script = "/tmp/ublk-bad-syntax.lua"
    G.write_file(script, "return {\n size = \"8MiB\",\n queues = = 2 }\n")
    local rc, out = G.run_cli(script)
    assert.are_not.equal(0, rc)
    assert.matches("^ublk%-lua: /tmp/ublk%-bad%-syntax%.lua:3: ", out)
    assert.are.equal(1, select(2, out:gsub("\n", "")))
  end)

  it("refuses a script that raises, naming file and line", function()
    local script = "/tmp/ublk-raise.lua"
    G.write_file(script, "local x = 1\nerror('no disk today')\n")
    local rc, out = G.run_cli(script)
    assert.are_not.equal(0, rc)
    assert.matches("ublk%-raise%.lua:2: no disk today", out)
  end)

  it("refuses a bad parameter with the field, value and rule, and leaves no device", function()
    local script = "/tmp/ublk-bad-param.lua"
    G.write_file(script, 'return { size = "8MiB", block_size = 1000 }')
    local rc, out = G.run_cli(script)
    assert.are_not.equal(0, rc)
    assert.matches("'block_size' = 1000: must be a power of two from 512 to 4096", out)
  end)

  it("removes devices made before a later error in the script", function()
    local script = "/tmp/ublk-late-error.lua"
    G.write_file(script, [[
      local ublk = require "ublk"
      local dev = assert(ublk.device{ size = "4MiB" })
      assert(dev:start())
      error("changed my mind")
    ]])
    local rc, out = G.run_cli(script)
    assert.are_not.equal(0, rc)
    assert.matches("changed my mind", out)
  end)

  it("runs the demo that `make run` shows (ext4, checksums, SIGINT)", function()
    local out = G.must("UBLK_LUA_BIN=%s examples/demo.sh", G.bin)
    assert.matches("all 32 files read back intact", out)
    assert.matches("demo passed", out)
  end)

  it("fails clearly when the file backend cannot open its file", function()
    local rc, out = G.run_cli("examples/file.lua /nonexistent/dir/disk.img")
    assert.are_not.equal(0, rc)
    assert.matches("/nonexistent/dir/disk.img' does not exist", out)
  end)
end)
