-- Feature masks by name: every bit set shows, a bit ublk_uapi.h has no
-- name for as "bit N" (a newer kernel's), none is dropped.
local core = require "ublk.core"

describe("feature names", function()
  it("names the bits it knows, io_desc_size (bit 20, Linux 7.3) among them", function()
    local f = core.feature_names(2 ^ 0 + 2 ^ 7 + 2 ^ 20)
    assert.are.same({ zero_copy = true, user_copy = true, io_desc_size = true }, f)
  end)

  it("shows a bit it has no name for as 'bit N'", function()
    assert.are.same({ ["bit 21"] = true, ["bit 52"] = true, shmem_zc = true },
      core.feature_names(2 ^ 19 + 2 ^ 21 + 2 ^ 52))
    assert.are.same({}, core.feature_names(0))
  end)

  it("refuses what is not a mask", function()
    assert.has_error(function() core.feature_names(-1) end)
    assert.has_error(function() core.feature_names(1.5) end)
    assert.has_error(function() core.feature_names(2 ^ 53) end)
  end)
end)
