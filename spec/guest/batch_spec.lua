-- batch = true (UBLK_F_BATCH_IO, Linux 7.0+): a queue hands its tags to
-- the kernel with one PREP_IO_CMDS, takes requests from one multishot
-- FETCH_IO_CMDS and answers a pass's worth in one COMMIT_IO_CMDS.  On such
-- a device the kernel refuses the per-tag FETCH/COMMIT_AND_FETCH, so every
-- byte checked here moved by the batch commands.  A kernel without it
-- refuses batch = true by name, before any device exists.  (ext4 + fsck and a
-- failed copy under batch I/O: copy_spec.lua; kill -9 and recover: recovery_spec.lua.)
local ublk = require "ublk"
local G = require "guest"

local features = ublk.features() or {} -- nil on a host without ublk (busted loads this file there too)

local function errors(dev) return dev:stats().total.errors end

describe("#guest batch I/O", function()
  after_each(G.no_leftovers)

  if not features.batch_io then
    it("batch = true is refused by name where the kernel lacks UBLK_F_BATCH_IO", function()
      local dev, err = ublk.device{ size = "16MiB", batch = true }
      assert.is_nil(dev)
      assert.matches("batch = true needs UBLK_F_BATCH_IO %(Linux 7.0%+%)", err)
    end)
    return
  end

  it("is off by default, and on where asked", function()
    assert.falsy(G.device{ size = "16MiB" }:info().flags.batch_io)
    assert.truthy(G.device{ size = "16MiB", batch = true }:info().flags.batch_io)
  end)

  local MODES = {
    { "memory, default copy", {}, "auto_reg+user_copy" },
    { "memory, inline user copy", { copy = "inline" }, "user_copy" },
    { "memory, buffer copy", { copy = "buffer" }, "buffer" },
    { "memory, register zero copy", { copy = "register" }, "register" },
    { "file on tmpfs, auto_reg zero copy", { backend = "file", create = true }, "auto_reg" },
    -- each request's slot registered and given back by its own commands,
    -- beside the batch ones
    { "file on tmpfs, register zero copy", { backend = "file", create = true,
      copy = "register" }, "register" },
    { "file on tmpfs, buffer copy", { backend = "file", create = true, copy = "buffer" }, "buffer" },
  }
  for i, m in ipairs(MODES) do
    it(m[1] .. ": fio crc32c verify with two jobs on two queues", function()
      local t = { size = "64MiB", queues = 2, depth = 64, batch = true }
      for k, v in pairs(m[2]) do t[k] = v end
      if t.backend == "file" then t.path = "/tmp/ublk-batch-" .. i .. ".img" end
      local dev = G.device(t)
      assert.are.equal(m[3], dev:info().copy)
      assert.truthy(dev:info().flags.batch_io)
      G.fio_verify(dev.path, 32)
      G.fio_verify(dev.path, 32, "--numjobs=2 --iodepth=48 --bsrange=4k-256k")
      assert.are.equal(0, errors(dev))
      dev:close()
      if t.path then os.remove(t.path) end
    end)
  end

  it("closing while fio runs on it ends the I/O and removes the device", function()
    local dev = G.device{ size = "64MiB", queues = 2, depth = 64, batch = true }
    local fio = io.popen(("fio --name=bg --filename=%s --rw=randrw --bs=4k --iodepth=32 "
      .. "--numjobs=2 --ioengine=io_uring --direct=1 --time_based --runtime=20 "
      .. "--output=/dev/null 2>&1; echo rc=$?"):format(dev.path))
    G.must("sleep 1")
    local t0 = G.now()
    dev:close()
    assert.truthy(G.now() - t0 < 10, "stopping under load took too long")
    local out = fio:read("*a")
    fio:close()
    assert.matches("rc=", out)
  end)
end)
