-- Bytes written through /dev/ublkbN read back unchanged, at offsets that
-- are 512-byte aligned but not 4 KiB aligned, from every CPU, on every
-- backend.
local G = require "guest"

-- the CPUs a thread of this process may run on, as the kernel lists them
local function allowed(tid)
  return G.read_file(("/proc/self/task/%d/status"):format(tid)):match("Cpus_allowed_list:%s*(%S+)")
end

local function backends()
  local file = os.tmpname()
  return {
    { backend = "memory" },
    { backend = "file", path = file, size = "32MiB", create = true },
    { backend = "file", path = "/dev/shm/ublk-direct.img", size = "32MiB", direct = false,
      create = true },
  }, function() os.remove(file); os.remove("/dev/shm/ublk-direct.img") end
end

describe("#guest data", function()
  after_each(G.no_leftovers)

  local list, cleanup = backends()
  teardown(cleanup)
  for _, b in ipairs(list) do
    it(("round-trips unaligned writes on the %s backend%s"):format(b.backend,
        b.path and (" (" .. b.path .. ")") or ""), function()
      local t = { size = "32MiB", queues = 2, depth = 16 }
      for k, v in pairs(b) do t[k] = v end
      local dev = G.device(t)
      -- offsets: sector 1, sector 7 (crosses a 4 KiB page), sector 4095,
      -- and the very last sector of the disk
      local cases = {
        { 512, 512 }, { 7 * 512, 9 * 512 }, { 4095 * 512, 129 * 512 },
        { 3 * 2^20 + 1536, 300 * 1024 }, { 32 * 2^20 - 512, 512 },
      }
      local sums = {}
      for i, c in ipairs(cases) do sums[i] = G.write_random_at(dev.path, c[1], c[2]) end
      for i, c in ipairs(cases) do
        assert.are.equal(sums[i], G.md5_at(dev.path, c[1], c[2]),
          ("bytes at %d+%d"):format(c[1], c[2]))
      end
      -- neighbours of a 512-byte write are untouched (zero on a new disk)
      local zero512 = G.must("head -c 512 /dev/zero | md5sum"):match("%x+")
      assert.are.equal(zero512, G.md5_at(dev.path, 0, 512))
      assert.are.equal(zero512, G.md5_at(dev.path, 1024, 512))
    end)
  end

  it("serves I/O from every CPU, each queue on its own CPU, without mixing data", function()
    local n = G.ncpus()
    local dev = G.device{ size = "64MiB", queues = n, depth = 32, pin = true }
    local sums = {}
    for cpu = 0, n - 1 do
      -- 1 MiB per CPU at an odd sector offset
      sums[cpu] = G.write_random_at(dev.path, cpu * 4 * 2^20 + 512, 2^20, cpu)
    end
    for cpu = 0, n - 1 do
      local got = G.must("taskset -c %d dd if=%s bs=512 skip=%d count=2048 iflag=direct status=none | md5sum",
        (cpu + 1) % n, dev.path, (cpu * 4 * 2^20 + 512) / 512):match("%x+")
      assert.are.equal(sums[cpu], got, "data written from CPU " .. cpu)
    end
    local stats = dev:stats()
    for q = 1, n do
      assert.truthy(stats[q].writes > 0, ("queue %d saw no writes"):format(q - 1))
      assert.truthy(stats[q].reads > 0, ("queue %d saw no reads"):format(q - 1))
      assert.are.equal(1, #stats[q].cpus, "queue pinned to one CPU")
      -- cpu: where the thread last ran, read now (not at its start)
      assert.are.equal(stats[q].cpus[1], stats[q].cpu, "queue thread runs on its CPU")
      assert.are.equal(0, stats[q].errors)
    end
  end)

  it("pins each queue thread to its CPU with pin = true, and not by default", function()
    local pinned = G.device{ size = "4MiB", queues = 2, pin = true }
    for _, s in ipairs(pinned:stats()) do
      -- the CPUs GET_QUEUE_AFFINITY gave (6.12 and 7.x map queues differently)
      assert.are.equal(1, #s.cpus)
      assert.are.equal(tostring(s.cpus[1]), allowed(s.tid))
    end
    local free = G.device{ size = "4MiB", queues = 2 }
    local all = ("0-%d"):format(G.ncpus() - 1)
    for _, s in ipairs(free:stats()) do assert.are.equal(all, allowed(s.tid)) end
    local md5 = G.write_random_at(free.path, 512, 65536)
    assert.are.equal(md5, G.md5_at(free.path, 512, 65536))
  end)
  it("pin = true keeps a queue thread on the CPUs the process was given (taskset)", function()
    assert.truthy(G.ncpus() >= 2, "a guest of 2 CPUs at least")
    -- this process (its queue threads start from this thread) on CPU 0 only:
    -- the queue the kernel maps to CPU 1 has none of its CPUs to pin to.
    -- Given back as it was after (what nproc says shrinks with it).
    local me = G.read_file("/proc/self/stat"):match("^%d+")
    local before = allowed(me)
    G.must("taskset -p -c 0 %s", me)
    local ok, err = pcall(function()
      local dev = G.device{ size = "4MiB", queues = 2, pin = true }
      for _, s in ipairs(dev:stats()) do
        assert.are.equal("0", allowed(s.tid), ("queue %d (CPUs %s)"):format(s.queue or -1,
          table.concat(s.cpus, ",")))
      end
      local md5 = G.write_random_at(dev.path, 512, 65536)
      assert.are.equal(md5, G.md5_at(dev.path, 512, 65536))
      dev:close()
    end)
    G.must("taskset -p -c %s %s", before, me)
    assert(ok, err)
  end)
  it('pin = "auto": a queue thread served one request at a time pins itself to its CPU', function()
    local dev = G.device{ size = "4MiB", queues = 2, pin = "auto" }
    local all = ("0-%d"):format(G.ncpus() - 1)
    for _, s in ipairs(dev:stats()) do assert.are.equal(all, allowed(s.tid)) end
    -- 1000 reads one at a time from CPU 0: its queue sees each one alone
    G.must("taskset -c 0 dd if=%s of=/dev/null bs=4k count=1000 iflag=direct status=none", dev.path)
    local pinned = 0
    for _, s in ipairs(dev:stats()) do
      local now = allowed(s.tid)
      if now ~= all then
        pinned = pinned + 1
        assert.are.equal(1, #s.cpus)
        assert.are.equal(tostring(s.cpus[1]), now)
      end
    end
    assert.are.equal(1, pinned, "the queue CPU 0 submits to, and only it")
  end)
  it("a queue thread runs SCHED_OTHER while requests come one at a time, SCHED_BATCH in batches", function()
    -- field 41 of a task's stat: 0 SCHED_OTHER, 3 SCHED_BATCH
    local function policy(tid)
      local st = G.read_file(("/proc/self/task/%d/stat"):format(tid))
      local fields = {}
      for f in st:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = f end
      return tonumber(fields[41 - 2])
    end
    local function policies(dev)
      local other, batch = 0, 0
      for _, s in ipairs(dev:stats()) do
        local p = policy(s.tid)
        if p == 0 then other = other + 1 elseif p == 3 then batch = batch + 1 end
      end
      return other, batch
    end
    local dev = G.device{ size = "16MiB", queues = 2 }
    assert.are.same({ 0, 2 }, { policies(dev) }, "both threads start SCHED_BATCH")
    -- 1000 reads one at a time from CPU 0: its queue sees each one alone
    G.must("taskset -c 0 dd if=%s of=/dev/null bs=4k count=1000 iflag=direct status=none", dev.path)
    assert.are.same({ 1, 1 }, { policies(dev) }, "the queue CPU 0 submits to, and only it")
    -- 64 in flight from the same CPU: batches again
    G.must("fio --name=b --filename=%s --ioengine=io_uring --direct=1 --rw=randread --bs=4k "
      .. "--iodepth=64 --cpus_allowed=0 --number_ios=20000 --size=16M --output=/dev/null", dev.path)
    assert.are.same({ 0, 2 }, { policies(dev) }, "SCHED_BATCH again under a deep queue")
    local md5 = G.write_random_at(dev.path, 0, 2^20)
    assert.are.equal(md5, G.md5_at(dev.path, 0, 2^20))
  end)
  it('pin = "auto": the io-wq workers of a queue thread move with it (file on tmpfs)', function()
    -- every read and write on tmpfs goes through the ring's io-wq workers,
    -- named "iou-wrk-TID" after the queue thread; the first requests start
    -- them while the thread is not yet pinned
    local function workers(tid)
      local found = {}
      local me = G.read_file("/proc/self/stat"):match("^%d+") -- this process, not a shell's
      for t in G.must("ls /proc/%s/task", me):gmatch("%d+") do
        -- a thread may end between the listing and the read
        local f = io.open(("/proc/self/task/%s/comm"):format(t))
        local comm = f and f:read("*a")
        if f then f:close() end
        if comm and comm:match("^iou%-wrk%-(%d+)") == tostring(tid) then found[#found + 1] = t end
      end
      return found
    end
    local path = "/tmp/ublk-pin-auto.img"
    local dev = G.device{ backend = "file", path = path, create = true, size = "8MiB",
      queues = 2, pin = "auto" }
    local md5 = G.write_random_at(dev.path, 0, 4 * 2^20)
    G.must("taskset -c 0 dd if=%s of=/dev/null bs=4k count=1000 iflag=direct status=none", dev.path)
    local pinned = 0
    for _, s in ipairs(dev:stats()) do
      local mine = allowed(s.tid)
      if #s.cpus == 1 and mine == tostring(s.cpus[1]) then
        pinned = pinned + 1
        local wrk = workers(s.tid)
        assert.truthy(#wrk > 0, "the pinned queue thread has io-wq workers")
        for _, w in ipairs(wrk) do assert.are.equal(mine, allowed(w), "worker " .. w) end
      end
    end
    assert.are.equal(1, pinned, "the queue CPU 0 submits to pinned itself")
    assert.are.equal(md5, G.md5_at(dev.path, 0, 4 * 2^20))
    dev:close()
    os.remove(path)
  end)
  it("poll_us: queue threads spin between requests instead of sleeping, and sleep once idle", function()
    local function sleeps(dev)
      local n = 0
      for _, s in ipairs(dev:stats()) do
        local st = G.read_file(("/proc/self/task/%d/status"):format(s.tid))
        n = n + tonumber(st:match("voluntary_ctxt_switches:%s*(%d+)"))
      end
      return n
    end
    -- 1000 reads one at a time: an unpolled thread sleeps after each one
    local function reads(dev)
      local before = sleeps(dev)
      G.must("dd if=%s of=/dev/null bs=4k count=1000 iflag=direct status=none", dev.path)
      return sleeps(dev) - before
    end
    local plain = G.device{ size = "32MiB", queues = 2 }
    local polled = G.device{ size = "32MiB", queues = 2, poll_us = 5000 }
    local slept_plain, slept_polled = reads(plain), reads(polled)
    print(("\n# sleeps per 1000 QD1 reads: %d unpolled, %d with poll_us = 5000"):format(
      slept_plain, slept_polled))
    assert.truthy(slept_plain >= 900, "an unpolled queue thread sleeps per request")
    assert.truthy(slept_polled < 500, "a polled queue thread spins between requests")
    G.fio_verify(polled.path, 16)
    -- 0.3 s idle is 60 windows: a thread still spinning would be running
    G.must("sleep 0.3")
    for _, s in ipairs(polled:stats()) do
      local stat = G.read_file(("/proc/self/task/%d/stat"):format(s.tid))
      assert.are.equal("S", stat:match("%) (%a)"), "queue thread state: " .. stat)
    end
  end)
end)
