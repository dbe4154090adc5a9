-- What held when a hostile but fair user tried it, kept by tests: many
-- devices in one process, servers creating devices at once with the ids
-- the kernel picks, and a server stopped under a verifying writer.
local G = require "guest"

describe("#guest endurance", function()
  local procs = {}
  after_each(function()
    G.close_all()
    G.end_all(procs)
  end)

  it("32 devices in one process each serve their own bytes", function()
    local devs, sums = {}, {}
    for i = 1, 32 do
      devs[i] = G.device{ size = "8MiB", queues = 1, depth = 16, recovery = false }
    end
    for i, dev in ipairs(devs) do sums[i] = G.write_random_at(dev.path, i * 65536, 65536) end
    for i, dev in ipairs(devs) do
      assert.are.equal(sums[i], G.md5_at(dev.path, i * 65536, 65536), dev.path)
    end
    local ids = {}
    for _, dev in ipairs(devs) do
      assert.is_nil(ids[dev.id], "id " .. dev.id .. " given twice")
      ids[dev.id] = true
    end
  end)

  it("4 servers making 8 devices each at once get distinct ids, all data correct", function()
    for i = 1, 4 do procs[i] = G.spawn("spec/guest/scripts/eight.lua") end
    local paths, seen = {}, {}
    for _, p in ipairs(procs) do
      local deadline = os.time() + 120
      local n = 0
      repeat
        G.sh("sleep 0.1")
        n = select(2, p:out():gsub("ready", ""))
        assert(not p:exited(), "a server ended: " .. p:err())
      until n == 8 or os.time() > deadline
      assert.are.equal(8, n, p:err())
      for path in p:out():gmatch("(/dev/ublkb%d+) ready") do
        assert.is_nil(seen[path], path .. " given twice")
        seen[path] = true
        paths[#paths + 1] = path
      end
    end
    assert.are.equal(32, #paths)
    local sums = {}
    for i, path in ipairs(paths) do sums[i] = G.write_random_at(path, 0, 65536) end
    for i, path in ipairs(paths) do assert.are.equal(sums[i], G.md5_at(path, 0, 65536), path) end
    for _, p in ipairs(procs) do p:kill("TERM") end
    for _, p in ipairs(procs) do assert.are.equal(0, p:wait(60)) end
  end)

  it("a server stopped (SIGSTOP) for 10 s under a verifying writer resumes with no error",
    function()
      local p, path = G.serve("spec/guest/scripts/no-recovery.lua")
      procs[#procs + 1] = p
      local fio = G.spawn(table.concat({
        "fio --name=v --filename=" .. path, "--ioengine=io_uring --direct=1",
        "--rw=randwrite --bsrange=4k-128k --iodepth=16 --size=48M --loops=5",
        "--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0",
      }, " "), true)
      procs[#procs + 1] = fio
      G.sh("sleep 0.5")
      p:kill("STOP")
      G.sh("sleep 10")
      assert.is_false(fio:exited(), "the writer finished before the stop: nothing was tested")
      p:kill("CONT")
      assert.are.equal(0, fio:wait(300), fio:out() .. fio:err())
      assert.matches("err= 0", fio:out())
      p:kill("TERM")
      assert.are.equal(0, p:wait(30))
    end)
end)
