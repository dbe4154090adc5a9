-- fio verify (G.fio_verify) on the memory and file backends in their
-- default modes; spec/guest/copy_spec.lua covers every copy mode.
local G = require "guest"

local fio_verify = G.fio_verify

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
