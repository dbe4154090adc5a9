-- Kernel parity (issue 22): what the running kernel's driver can do, a
-- script and the CLI can ask for; a 7.x-only feature says on 6.12 that it
-- skips, by name.
local G = require "guest"
local json = require "ublk.json"
local M = require "manage"
local ublk = require "ublk"
local cli, add, listed, clean = M.cli, M.add, M.listed, M.clean

local features, mask = ublk.features() -- nil on a host without ublk (busted loads this file there too)
features = features or {}

local t_start
local function skip_line(what, needs)
  print(("# SKIP %s: needs %s, which kernel %s lacks"):format(what, needs,
    G.must("uname -r"):gsub("%s+$", "")))
end

describe("#guest kernel parity", function()
  setup(function() t_start = G.now() end)
  teardown(function() print(("# parity_spec: %.1f s"):format(G.now() - t_start)) end)
  after_each(function()
    G.close_all()
    M.reset()
  end)

  it("features shows every bit the kernel reports, unnamed ones as 'bit N'", function()
    local n = 0
    for bit = 0, 52 do
      if math.floor(mask / 2 ^ bit) % 2 == 1 then n = n + 1 end
    end
    local rc, out = cli("features --json")
    assert.are.equal(0, rc, out)
    local f = assert(json.decode(out))
    assert.are.equal(n, #f.features, out)
    for _, name in ipairs(f.features) do assert.is_true(features[name], name) end
    if math.floor(mask / 2 ^ 20) % 2 == 1 then -- 7.3: UBLK_F_IO_DESC_SIZE
      assert.is_true(features.io_desc_size)
    else
      assert.is_nil(features.io_desc_size)
    end
    assert.is_nil(out:match('"bit %d"'), "a bit this ublk-lua names shown as a number: " .. out)
  end)

  it("more queues than CPUs: the kernel's count is taken, and said", function()
    local n = G.ncpus()
    local dev = G.device{ size = "16MiB", queues = n + 3 }
    local info = dev:info()
    assert.are.equal(n, info.queues)
    assert.are.equal(n + 3, info.queues_asked)
    assert.are.equal("kernel", info.queues_limited_by)
    -- every queue serves: data through all of them, by checksum
    local md5 = G.write_random_at(dev.path, 0, 4 * 1048576)
    assert.are.equal(md5, G.md5_at(dev.path, 0, 4 * 1048576))
    dev:close()
    local id, _, line = add(("-t memory -s 16MiB -q %d"):format(n + 3))
    assert.matches(("%d queues? x 128 %%(queues = %d asked: the kernel allows %d, one per CPU%%)")
      :format(n, n + 3, n), line)
    assert.are.equal(n, listed(id).queues)
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)
end)
