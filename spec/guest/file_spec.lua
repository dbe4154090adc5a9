-- The file backend's edges: it creates or grows a file only when asked,
-- never under /dev; write-zeroes works where the filesystem lacks
-- ZERO_RANGE; a vanished block device fails reads instead of reading as
-- zeroes; block devices are served with O_DIRECT by default.
local ublk = require "ublk"
local G = require "guest"
local stderr = require "stderr"

local function refused(t, pattern)
  local ok, dev, err = pcall(ublk.device, t)
  assert.is_true(ok, tostring(dev))
  assert.is_nil(dev)
  assert.matches(pattern, err)
end

describe("#guest file backend", function()
  after_each(G.no_leftovers)

  it("creates a missing file or grows a short one only with create = true", function()
    local path = "/tmp/ublk-create.img"
    os.remove(path)
    refused({ backend = "file", path = path, size = "8MiB" },
      "^ENOENT: backend 'file': '/tmp/ublk%-create.img' does not exist %(create = true and a size make it; on the command line: %-%-create %-s SIZE%)")
    assert.falsy(G.sh("test -e %s", path))
    G.must("truncate -s 1M %s", path)
    refused({ backend = "file", path = path, size = "8MiB" },
      "holds 1048576 bytes, less than size 8388608 %(create = true grows it%)")
    assert.are.equal("1048576", G.must("stat -c %%s %s", path):match("%d+"))
    local dev = G.device{ backend = "file", path = path, size = "8MiB", create = true }
    assert.are.equal("grew " .. path, dev:info().note)
    assert.are.equal("8388608", G.must("stat -c %%s %s", path):match("%d+"))
    dev:close()
    os.remove(path)
    dev = G.device{ backend = "file", path = path, size = "8MiB", create = true }
    assert.are.equal("created " .. path, dev:info().note)
    dev:close()
    os.remove(path)
  end)

  it("never creates a file under /dev, create or not", function()
    refused({ backend = "file", path = "/dev/sdz", size = "1GiB", create = true },
      "'/dev/sdz' does not exist %(files under /dev are never created%)")
    assert.falsy(G.sh("test -e /dev/sdz"))
  end)

  it("says in the ready line what it created", function()
    local path = "/tmp/ublk-cli-create.img"
    os.remove(path)
    local p = G.spawn("examples/file.lua " .. path .. " 16MiB")
    local line = p:wait_output("(/dev/ublkb%d+ ready [^\n]*)")
    assert.matches("ready %(16 MiB, 2 queues x 128, file, [^,]+, created " .. path:gsub("%-", "%%-") .. "%)", line)
    p:kill("TERM")
    assert.are.equal(0, p:wait())
    p:cleanup()
    os.remove(path)
  end)

  it("zeroes a range on tmpfs, which has no FALLOC_FL_ZERO_RANGE", function()
    local path = "/dev/shm/ublk-zeroes.img"
    local dev = G.device{ backend = "file", path = path, size = "8MiB", create = true }
    G.must("dd if=/dev/urandom of=%s bs=1M count=2 oflag=direct status=none", dev.path)
    local tail = G.md5_at(dev.path, 65536, 65536)
    -- BLKZEROOUT sends WRITE_ZEROES with NOUNMAP: ZERO_RANGE, then the fallback
    G.must("blkdiscard -z -o 0 -l 65536 %s", dev.path)
    assert.are.equal(G.must("head -c 65536 /dev/zero | md5sum"):match("%x+"),
      G.md5_at(dev.path, 0, 65536))
    assert.are.equal(tail, G.md5_at(dev.path, 65536, 65536))
    assert.are.equal(0, dev:stats().total.errors)
    dev:close()
    os.remove(path)
  end)

  it("fails reads when its block device goes away, and opens block devices O_DIRECT", function()
    local lower = G.device{ size = "8MiB" }
    G.must("dd if=/dev/urandom of=%s bs=1M count=8 oflag=direct status=none", lower.path)
    local upper = G.device{ backend = "file", path = lower.path }
    -- O_DIRECT by default: the backing fd's flags say so (040000 octal)
    local flags
    local pid = ublk.thread_id() -- the main thread's id is the process's
    for fd in G.must("ls /proc/%d/fd", pid):gmatch("%d+") do
      local ok, target = G.sh("readlink /proc/%d/fd/%s", pid, fd)
      if ok and target:match("^" .. lower.path .. "%s*$") then
        flags = G.read_file(("/proc/%d/fdinfo/%s"):format(pid, fd)):match("flags:%s*(%d+)")
      end
    end
    assert.truthy(flags, "no fd on " .. lower.path)
    assert.are_not.equal(0, bit.band(tonumber(flags, 8), tonumber("40000", 8)), "O_DIRECT")
    assert.are.equal(G.md5_at(lower.path, 0, 65536), G.md5_at(upper.path, 0, 65536))
    -- upper still holds lower open: lower goes at once, with a word on who holds it
    local said = stderr.capture(function() assert(lower:close()) end)
    assert.matches("dev %d+: removed, but " .. lower.path .. " is still open in pid %d+", said)
    local ok = G.sh("dd if=%s of=/dev/null bs=4096 count=1 skip=100 iflag=direct status=none", upper.path)
    assert.is_false(ok, "a read from a vanished block device succeeded")
    assert.truthy(upper:stats().total.errors > 0)
  end)
end)
