-- fio writes random-sized blocks (4 KiB..512 KiB) from two jobs pinned to
-- different CPUs, then reads everything back and checks crc32c per block.
local G = require "guest"
local json = require "dkjson"

local function fio_verify(path, size_mib)
  local n = G.ncpus()
  local cmd = table.concat({
    "fio --output-format=json --name=verify --filename=" .. path,
    "--ioengine=io_uring --direct=1 --rw=randwrite --bsrange=4k-512k",
    "--iodepth=16 --numjobs=2 --cpus_allowed=0," .. (n > 1 and 1 or 0),
    "--cpus_allowed_policy=split",
    "--size=" .. math.floor(size_mib / 2) .. "M --offset_increment=" .. math.floor(size_mib / 2) .. "M",
    "--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0",
    "--output=/tmp/fio-verify.json",
  }, " ")
  local ok, out, rc = G.sh(cmd)
  assert(ok, ("fio failed (%s):\n%s\n%s"):format(rc, out, G.read_file("/tmp/fio-verify.json")))
  local report = assert(json.decode(G.read_file("/tmp/fio-verify.json"):match("{.*}")))
  -- prove that it really verified: each job read back all it wrote
  assert.are.equal(2, #report.jobs)
  for _, job in ipairs(report.jobs) do
    assert.are.equal(0, job.error)
    assert.truthy(job.write.io_bytes > 0, "fio wrote nothing")
    assert.are.equal(job.write.io_bytes, job.read.io_bytes)
  end
end

describe("#guest fio verify", function()
  after_each(G.no_leftovers)

  it("passes crc32c verify on the memory backend with 2 queues", function()
    local dev = G.device{ size = "128MiB", queues = 2, depth = 64 }
    fio_verify(dev.path, 64)
    local s = dev:stats()
    assert.truthy(s[1].writes > 0 and s[2].writes > 0, "both queues served")
    assert.are.equal(0, s.total.errors)
  end)

  it("passes crc32c verify on the file backend with 2 queues", function()
    local path = "/tmp/ublk-fio.img"
    local dev = G.device{ backend = "file", path = path, size = "128MiB", queues = 2, depth = 64,
      create = true }
    fio_verify(dev.path, 64)
    local s = dev:stats()
    assert.truthy(s[1].writes > 0 and s[2].writes > 0, "both queues served")
    dev:close()
    os.remove(path)
  end)
end)
