-- bench/peers/kublk.lua: the bench rows of the kernel's own ublk server,
-- kublk (Linux 7.3's tools/testing/selftests/ublk, which
-- bench/peers/build-kublk builds for `make bench PEERS=1`), each paired
-- with the row of ours that takes the same path through the driver, with
-- the same 2 queues of depth 128 (bench/device.lua).  bench/guest.lua
-- starts them; bench/report.lua shows ours over kublk's.
-- kublk pins each queue's thread to the CPUs the kernel maps to that
-- queue, as our -pinned rows do; our default rows pin while requests come
-- one at a time (pin = "auto"), our -unpinned rows never.
local M = { BIN = "build/peers/kublk" }

-- The rows for this kernel: { name, args, file (a 256 MiB file on tmpfs,
-- as ublk-file's), ours (the row it is compared with) }, in setup order.
-- file_buffer: whether bench/guest.lua makes the ublk-file-buffer row (it
-- does where the file backend's default is a zero-copy mode).
function M.rows(features, file_buffer)
  local rows = {
    -- no data moved, the kernel's copy to and from the tag's buffer
    -- included: our null backend's default (copy = buffer)
    { name = "kublk-null", args = "-t null", ours = "ublk-null" },
    -- reads and writes through the tag's buffer: our file backend's copy =
    -- buffer, its default where the kernel has no zero copy
    { name = "kublk-loop", args = "-t loop", file = "/tmp/kublk-loop.img",
      ours = file_buffer and "ublk-file-buffer" or "ublk-file" },
  }
  -- zero copy by automatic buffer registration (7.x): our file backend's
  -- default there
  if features.auto_buf_reg then
    rows[#rows + 1] = { name = "kublk-loop-zc", args = "-t loop --auto_zc",
      file = "/tmp/kublk-loop-zc.img", ours = "ublk-file" }
  end
  return rows
end

-- The server for a row, in the foreground so that its process, whose
-- threads' CPU time the bench reads, is the one spawned.
function M.command(row)
  return ("%s add %s -q 2 -d 128 --foreground%s"):format(M.BIN, row.args,
    row.file and " " .. row.file or "")
end

-- Stops and removes the device at PATH (/dev/ublkbN); its server exits.
function M.del(path)
  return ("%s del -n %s"):format(M.BIN, path:match("(%d+)$"))
end

return M
