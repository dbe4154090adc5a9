-- The example plugin (examples/c/ramlat.c) on a real /dev/ublkbN: served
-- from a script's device table under fio verify with two queues, and by
-- `add -t plugin --path X --fill N`.  Its histogram, written when the
-- device goes, counts what fio sent.  Its store (a UBLK_OPT_STORE option)
-- keeps its bytes across kill -9 + `recover` and across `reload`.  It is built here against a copy of
-- the contract headers placed as `make install` places them; the install
-- and the pkg-config build themselves are spec/plugin_spec.lua's, on the
-- host, where they cost no guest time.
local G = require "guest"
local M = require "manage"

local INC, SO = "/tmp/plugin-inc", "/tmp/ramlat.so"

describe("#guest a C backend as a plugin", function()
  local t0
  setup(function()
    t0 = G.now()
    G.must("mkdir -p %s/ublk-lua && cp runtime/include/backend.h runtime/include/ublk_uapi.h"
      .. " %s/ublk-lua", INC, INC)
    G.must("cc -std=gnu11 -O2 -fPIC -shared -I%s -o %s examples/c/ramlat.c", INC, SO)
    print(("# plugin_spec: built in %.1f s"):format(G.now() - t0))
  end)
  teardown(function()
    G.sh("rm -rf %s %s /tmp/ramlat.report", INC, SO)
    print(("# plugin_spec: %.1f s"):format(G.now() - t0))
  end)
  after_each(function()
    G.close_all()
    M.reset()
    assert.are.same({}, G.leftovers())
  end)

  it("passes crc32c verify with 2 queues, and its histogram counts the requests", function()
    local dev = G.device{ backend = "plugin", path = SO, size = "64MiB", queues = 2,
      depth = 64, report = "/tmp/ramlat.report" }
    local t = G.now()
    G.fio_verify(dev.path, 32)
    print(("# plugin_spec: fio verify %.1f s"):format(G.now() - t))
    local s = dev:stats()
    assert.truthy(s[1].writes > 0 and s[2].writes > 0, "both queues served")
    assert.are.equal(0, s.total.errors)
    dev:close()
    local counted = { read = 0, write = 0 }
    for op, n in G.read_file("/tmp/ramlat.report"):gmatch("(%a+) %d+%-%d+ ns: (%d+)") do
      counted[op] = counted[op] + tonumber(n)
    end
    assert.are.equal(s.total.writes, counted.write)
    assert.are.equal(s.total.reads, counted.read)
  end)

  it("keeps its bytes in its store across kill -9 + recover and reload, options and all", function()
    local t = G.now()
    local id, pid = M.add(("-t plugin --path %s -s 8MiB --fill 9"):format(SO))
    local path = "/dev/ublkb" .. id
    local store = M.listed(id).ublk_lua.store
    assert.matches("^/dev/shm/ublk%-lua%.", store)
    local fill = G.md5_at(path, 2 * 1048576, 1048576)
    local md5 = G.write_random_at(path, 0, 1048576)
    G.must("kill -9 %d", pid)
    assert.truthy(M.wait_until(function() return M.listed(id).state == "QUIESCED" end),
      "not QUIESCED")
    local rc, out = M.cli("recover -n %d", id)
    assert.are.equal(0, rc, out)
    assert.matches("dev id " .. id .. ": " .. path .. " .*recovered", out)
    assert.are.equal(md5, G.md5_at(path, 0, 1048576))
    assert.are.equal(fill, G.md5_at(path, 2 * 1048576, 1048576)) -- --fill 9, not refilled
    assert.are.equal(store, M.listed(id).ublk_lua.store)
    rc, out = M.cli("reload -n %d", id)
    assert.are.equal(0, rc, out)
    assert.are.equal(md5, G.md5_at(path, 0, 1048576))
    assert.are.equal(fill, G.md5_at(path, 2 * 1048576, 1048576))
    rc, out = M.cli("del -n %d", id)
    assert.are.equal(0, rc, out)
    M.clean() -- the store went with the device
    print(("# plugin_spec: recover + reload %.1f s"):format(G.now() - t))
  end)

  it("serves add -t plugin --path X --fill N", function()
    local t = G.now()
    local id, _, line = M.add(("-t plugin --path %s -s 8MiB --fill 9 --report /tmp/ramlat.report")
      :format(SO))
    -- the device is the plugin's: named by its own ops table
    assert.matches(", ramlat, ", line, 1, true)
    local path = "/dev/ublkb" .. id
    local tmp = os.tmpname()
    G.write_file(tmp, ("\9"):rep(1048576))
    local want = G.must("md5sum < %s", tmp):match("^(%x+)")
    os.remove(tmp)
    assert.are.equal(want, G.md5_at(path, 2 * 1048576, 1048576))
    local md5 = G.write_random_at(path, 0, 1048576)
    assert.are.equal(md5, G.md5_at(path, 0, 1048576))
    local rc, out = M.cli("del -n %d", id)
    assert.are.equal(0, rc, out)
    rc, out = M.cli("add -t plugin --path %s -s 8MiB --fill 300", SO)
    assert.are.equal(1, rc, out)
    assert.matches("'fill' = 300", out, 1, true)
    print(("# plugin_spec: add -t plugin %.1f s"):format(G.now() - t))
  end)
end)
