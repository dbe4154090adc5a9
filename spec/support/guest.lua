-- Helpers for guest specs: shell commands, byte checks on block devices,
-- and running the ublk-lua CLI in the background.  Guest specs run as root
-- on a kernel with ublk_drv (spec/harness/vm/run boots one).
local ublk = require "ublk"
local assert = require "luassert" -- busted's assert lives only in spec files

local G = {}

G.bin = os.getenv("UBLK_LUA_BIN") or "build/ublk-lua"

-- Runs a shell command; returns ok, combined output, exit code.
function G.sh(cmd, ...)
  if select("#", ...) > 0 then cmd = cmd:format(...) end
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\"")
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  rc = tonumber(rc)
  return rc == 0, body, rc
end

-- Like sh, but raises with the output when the command fails.
function G.must(cmd, ...)
  if select("#", ...) > 0 then cmd = cmd:format(...) end
  local ok, out, rc = G.sh(cmd)
  if not ok then error(("command failed (%d): %s\n%s"):format(rc, cmd, out), 2) end
  return out
end

function G.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function G.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- ublk devices the kernel still knows about (block and char side).
function G.leftovers()
  local _, out = G.sh("ls -d /sys/block/ublkb* /sys/class/ublk-char/ublkc* 2>/dev/null")
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = line end
  return list
end

-- The block size dd moves `len` bytes at `off` in: the largest power of two
-- up to 1 MiB dividing both, so an unaligned range still goes 512 bytes an
-- I/O while a MiB goes in one.  (512 bytes an I/O made a MiB 2048 requests:
-- 82 of slow.lua's 100 s at 20 ms each, on 7.3 under TCG.)
local function dd_bs(off, len)
  assert(off % 512 == 0 and len % 512 == 0, "not whole sectors")
  local bs = 512
  while bs < 1048576 and off % (bs * 2) == 0 and len % (bs * 2) == 0 do bs = bs * 2 end
  return bs
end

-- md5 of `len` bytes at `off` of a block device, read with O_DIRECT so the
-- page cache cannot answer for the device.
function G.md5_at(path, off, len)
  local bs = dd_bs(off, len)
  local out = G.must("dd if=%s bs=%d skip=%d count=%d iflag=direct status=none | md5sum",
    path, bs, off / bs, len / bs)
  return out:match("^(%x+)")
end

-- Writes `len` random bytes at `off` (O_DIRECT); returns their md5.
function G.write_random_at(path, off, len, cpu)
  local bs = dd_bs(off, len)
  local tmp = os.tmpname()
  G.must("head -c %d /dev/urandom > %s", len, tmp)
  local md5 = G.must("md5sum < %s", tmp):match("^(%x+)")
  G.must("%sdd if=%s of=%s bs=%d seek=%d oflag=direct conv=notrunc status=none",
    cpu and ("taskset -c %d "):format(cpu) or "", tmp, path, bs, off / bs)
  os.remove(tmp)
  return md5
end

-- Seconds on the monotonic clock.
function G.now()
  return ublk.clock()
end

function G.ncpus()
  return tonumber(G.must("nproc"):match("%d+"))
end

-- RssAnon of this process in KiB.
function G.rss_anon_kib()
  return tonumber(G.read_file("/proc/self/status"):match("RssAnon:%s*(%d+)"))
end

-- KiB of shared memory (memfds, tmpfs, /dev/shm) in use on the machine:
-- a memfd's pages count here whether or not they are mapped.
function G.shmem_kib()
  return tonumber(G.read_file("/proc/meminfo"):match("\nShmem:%s*(%d+)"))
end

-- fio writes random-sized blocks (4 KiB..512 KiB) from two jobs pinned to
-- different CPUs, then reads everything back and checks crc32c per block;
-- `extra` adds fio options.  Returns fio's JSON report.
function G.fio_verify(path, size_mib, extra)
  local json = require "dkjson"
  local n = G.ncpus()
  local cmd = table.concat({
    "fio --output-format=json --name=verify --filename=" .. path,
    "--ioengine=io_uring --direct=1 --rw=randwrite --bsrange=4k-512k",
    "--iodepth=16 --numjobs=2 --cpus_allowed=0," .. (n > 1 and 1 or 0),
    "--cpus_allowed_policy=split",
    "--size=" .. math.floor(size_mib / 2) .. "M --offset_increment=" .. math.floor(size_mib / 2) .. "M",
    "--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0",
    "--output=/tmp/fio-verify.json", extra or "",
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
  return report
end

-- Creates and starts a device; raises on failure.  Specs close it in
-- after_each through G.close_all().
function G.device(t)
  local dev = assert(ublk.device(t))
  assert(dev:start())
  return dev
end

-- Runs examples/NAME.lua with ARGS as the CLI would, returning what it
-- returns (device parameters), so a spec can make the device in-process
-- and look at the example's own state.
function G.example(name, ...)
  local chunk = assert(loadfile("examples/" .. name .. ".lua"))
  return chunk(...)
end

function G.close_all()
  ublk.close_all()
end

-- For after_each: closes every device the spec made and checks that the
-- kernel has none left.
function G.no_leftovers()
  ublk.close_all()
  assert.are.same({}, G.leftovers())
end

-- ---- the CLI in the background ----

local Proc = {}
Proc.__index = Proc

-- Starts `ublk-lua ARGS` (or, with raw, the command ARGS) with its stdout
-- and stderr in files.
function G.spawn(args, raw)
  local dir = G.must("mktemp -d"):gsub("%s+$", "")
  local cmd = raw and args or (G.bin .. " " .. args)
  G.must("sh -c '%s > %s/out 2> %s/err & echo $! > %s/pid; wait $!; echo $? > %s/rc' "
    .. "> /dev/null 2>&1 &", cmd, dir, dir, dir, dir)
  local self = setmetatable({ dir = dir }, Proc)
  self:wait_file("pid")
  self.pid = tonumber(G.read_file(dir .. "/pid"))
  return self
end

function Proc:wait_file(name, timeout)
  local ok = G.sh("timeout %d sh -c 'until [ -s %s/%s ]; do sleep 0.05; done'",
    timeout or 60, self.dir, name)
  return ok
end

function Proc:out() return G.read_file(self.dir .. "/out") end
function Proc:err() return G.read_file(self.dir .. "/err") end

-- Waits until stdout has a line matching `pattern` or the process ended.
function Proc:wait_output(pattern, timeout)
  local deadline = os.time() + (timeout or 120)
  while os.time() <= deadline do
    local out = self:out()
    local hit = out:match(pattern)
    if hit then return hit end
    if self:exited() then return nil, "exited: " .. self:err() end
    G.sh("sleep 0.05")
  end
  return nil, "timeout; stderr: " .. self:err()
end

function Proc:exited()
  local f = io.open(self.dir .. "/rc")
  if not f then return false end
  local s = f:read("*a")
  f:close()
  return s ~= ""
end

function Proc:kill(sig)
  G.must("kill -%s %d", sig, self.pid)
end

-- Exit status once the process has ended (waits up to `timeout` s).
function Proc:wait(timeout)
  assert(self:wait_file("rc", timeout or 120), "process did not exit")
  return tonumber(G.read_file(self.dir .. "/rc"))
end

function Proc:cleanup()
  if not self:exited() then G.sh("kill -9 %d", self.pid) end
  G.sh("rm -rf %s", self.dir)
end

-- Starts `[ENV] ublk-lua ARGS` and waits for its first ready line; returns
-- the process and the device path.  Raises with its stderr if it never
-- becomes ready.
function G.serve(args, env)
  local p = G.spawn((env and env .. " " or "") .. G.bin .. " " .. args, true)
  local path, err = p:wait_output("(/dev/ublkb%d+) ready", 120)
  if not path then
    p:cleanup()
    error("ublk-lua did not become ready: " .. tostring(err))
  end
  return p, path
end

-- For after_each: ends what a spec started and checks nothing is left (a
-- reaper may still be finishing: it gets a moment, no more).
function G.end_all(procs)
  for _, p in ipairs(procs) do p:cleanup() end
  for i = #procs, 1, -1 do procs[i] = nil end
  G.sh("timeout 10 sh -c 'while ls /sys/class/ublk-char/ublkc* >/dev/null 2>&1; do sleep 0.1; done'")
  assert.are.same({}, G.leftovers())
end

-- Runs the CLI to completion (for scripts that must fail).
function G.run_cli(args)
  local ok, out, rc = G.sh("%s %s", G.bin, args)
  return rc, out, ok
end

return G
