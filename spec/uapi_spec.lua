-- The ublk UAPI structs in runtime/include/ublk_uapi.h, laid out by LuaJIT's FFI
-- from the header text, match the kernel's sizes and offsets.
local ffi = require "ffi"
local uapi = require "uapi"

describe("ublk UAPI layout", function()
  setup(function() uapi.declare() end)

  local sizes = {
    ublksrv_ctrl_cmd = 32, ublksrv_ctrl_dev_info = 64, ublksrv_io_desc = 24,
    ublksrv_io_cmd = 16, ublk_param_basic = 32, ublk_param_discard = 20,
    ublk_param_devt = 16, ublk_param_zoned = 32, ublk_param_dma_align = 8,
    ublk_param_segment = 16, ublk_param_integrity = 16, ublk_params = 152,
    ublk_batch_io = 16, ublk_elem_header = 8, ublk_shmem_buf_reg = 24,
  }
  for name, size in pairs(sizes) do
    it("struct " .. name .. " is " .. size .. " bytes", function()
      assert.are.equal(size, ffi.sizeof("struct " .. name))
    end)
  end

  it("puts fields where the kernel reads them", function()
    local function off(s, f) return ffi.offsetof("struct " .. s, f) end
    assert.are.equal(8, off("ublksrv_ctrl_cmd", "addr"))
    assert.are.equal(16, off("ublksrv_ctrl_cmd", "data"))
    assert.are.equal(24, off("ublksrv_ctrl_dev_info", "flags"))
    assert.are.equal(8, off("ublksrv_io_desc", "start_sector"))
    assert.are.equal(16, off("ublksrv_io_desc", "addr"))
    assert.are.equal(4, off("ublksrv_io_cmd", "result"))
    assert.are.equal(8, off("ublksrv_io_cmd", "addr"))
    assert.are.equal(16, off("ublk_param_basic", "dev_sectors"))
    assert.are.equal(40, off("ublk_params", "discard"))
    assert.are.equal(60, off("ublk_params", "devt"))
    assert.are.equal(120, off("ublk_params", "seg"))
    assert.are.equal(4, off("ublk_batch_io", "nr_elem"))
    assert.are.equal(6, off("ublk_batch_io", "elem_bytes"))
    assert.are.equal(4, off("ublk_elem_header", "result"))
    assert.are.equal(6, off("ublksrv_ctrl_dev_info", "io_desc_size"))
    assert.are.equal(16, off("ublk_shmem_buf_reg", "flags"))
  end)

  it("finds every struct the header defines", function()
    assert.are.equal(15, #uapi.structs())
  end)
end)
