-- What a user reads: list with no device, an add that fails (one
-- "ublk-lua:", a script's table named only when it returned several),
-- script paths in list (absolute however the script was named), and the
-- server log's lines (one shape; a handler's traceback on the lines after
-- its message; a handler reading a global the queue lacks named at
-- creation).  The other messages are in the host specs (cli_spec,
-- params_spec, lua_bridge_spec).
local G = require "guest"
local M = require "manage"
local cli, add, listed = M.cli, M.add, M.listed

local LOG = "/run/ublk-lua/server.log"
-- the CLI from another folder than the work tree's
local BIN = G.bin:sub(1, 1) == "/" and G.bin or (G.must("pwd"):gsub("%s+$", "") .. "/" .. G.bin)

-- The server log's lines written by process pid.
local function log_of(pid)
  local out = {}
  local lines = G.read_file(LOG) or ""
  local mine = false
  for l in lines:gmatch("[^\n]+") do
    -- a following line (indented) belongs to the message before it
    if l:match("^    ") then
      if mine then out[#out + 1] = l end
    else
      mine = l:match("^ublk%-lua%[(%d+)%]") == tostring(pid)
      if mine then out[#out + 1] = l end
    end
  end
  return table.concat(out, "\n")
end

describe("#guest messages", function()
  local t0
  before_each(function() t0 = G.now() end)
  after_each(function()
    M.reset()
    print(("# %.1f s"):format(G.now() - t0))
  end)

  it("list says 'no ublk devices' when there is none (and --json stays an array)", function()
    assert.are.same({}, G.leftovers())
    local rc, out = cli("list")
    assert.are.equal(0, rc, out)
    assert.are.equal("no ublk devices\n", out)
    rc, out = cli("list --json")
    assert.are.equal(0, rc, out)
    assert.are.equal("[]\n", out)
  end)

  it("says an add's failure with one 'ublk-lua:', naming a script's table only of several", function()
    local id = add("-t memory -s 8MiB")
    local rc, out = cli("add -t memory -s 8MiB -n %d", id)
    assert.are.equal(1, rc, out)
    assert.are.equal(("ublk-lua: add -t memory: EEXIST: device id %d is already in use\n"):format(id), out)
    local one = "/tmp/ublk-msg-one.lua"
    G.write_file(one, ("return { size = '8MiB', id = %d }"):format(id))
    rc, out = cli("add %s", one)
    assert.are.equal(1, rc, out)
    assert.are.equal(("ublk-lua: %s: EEXIST: device id %d is already in use\n"):format(one, id), out)
    local two = "/tmp/ublk-msg-two.lua"
    G.write_file(two, ("return { { size = '8MiB' }, { size = '8MiB', id = %d } }"):format(id))
    rc, out = cli("add %s", two)
    assert.are.equal(1, rc, out)
    assert.are.equal(("ublk-lua: %s: device 2: EEXIST: device id %d is already in use\n")
      :format(two, id), out)
    -- the first of the two did not stay
    assert.are.equal(1, #G.leftovers() / 2)
    os.remove(one)
    os.remove(two)
  end)

  it("lists a script's path absolute, however it was named, foreground or added", function()
    G.must("mkdir -p /tmp/ublk-msg/sub")
    G.write_file("/tmp/ublk-msg/disk.lua", "return { size = '8MiB' }")
    -- a foreground server started as ./sub/../disk.lua from its folder
    local p = G.spawn("cd /tmp/ublk-msg && exec " .. BIN .. " ./sub/../disk.lua", true)
    local path = assert(p:wait_output("(/dev/ublkb%d+) ready", 60))
    local fg = tonumber(path:match("%d+$"))
    -- an added one from the same folder, named plainly
    local rc, out = G.sh("cd /tmp/ublk-msg && %s add disk.lua", BIN)
    assert.is_true(rc, out)
    local bg = tonumber(out:match("dev id (%d+)"))
    assert.are.equal("/tmp/ublk-msg/disk.lua", listed(fg).ublk_lua.script)
    assert.are.equal("/tmp/ublk-msg/disk.lua", listed(bg).ublk_lua.script)
    local _, text = cli("list")
    assert.matches(("dev id %d: [^\n]*, /tmp/ublk%%-msg/disk%%.lua"):format(fg), text)
    p:kill("TERM")
    assert.are.equal(0, p:wait())
    p:cleanup()
    G.must("rm -rf /tmp/ublk-msg")
  end)

  it("stats --prom counts what dd did, and --textfile writes the same for a textfile collector", function()
    local id = add("-t memory -s 16MiB -q 2")
    local function read_prom(text)
      local n, bytes, hist = 0, 0, 0
      for q, v in text:gmatch('ublk_requests_total{dev="' .. id .. '",queue="(%d+)",op="read"} (%d+)') do
        n = n + tonumber(v)
      end
      for v in text:gmatch('ublk_bytes_total{dev="' .. id .. '",queue="%d+",direction="read"} (%d+)') do
        bytes = bytes + tonumber(v)
      end
      hist = tonumber(text:match('ublk_request_duration_seconds_count{dev="' .. id .. '",kind="read"} (%d+)'))
      return n, bytes, hist
    end
    -- the kernel's own count of the reads it completed on the disk, and
    -- sectors read (anything else reading the new disk, blkid say, counts
    -- on both sides)
    local function kernel_reads()
      local f = G.read_file(("/sys/block/ublkb%d/stat"):format(id))
      local reads, _, sectors = f:match("^%s*(%d+)%s+(%d+)%s+(%d+)")
      return tonumber(reads), tonumber(sectors)
    end
    local k0, s0 = kernel_reads()
    local rc, before = cli("stats --prom -n %d", id)
    assert.are.equal(0, rc, before)
    G.must("dd if=/dev/ublkb%d of=/dev/null bs=4096 count=256 iflag=direct status=none", id)
    local after
    rc, after = cli("stats --prom -n %d --textfile /tmp/ublk-msg.prom", id)
    local k1, s1 = kernel_reads()
    assert.are.equal(0, rc, after)
    assert.are.equal("", after)
    after = G.read_file("/tmp/ublk-msg.prom")
    local n0, b0, h0 = read_prom(before)
    local n1, b1, h1 = read_prom(after)
    assert.truthy(n1 - n0 >= 256, after)
    assert.are.equal(k1 - k0, n1 - n0, after)
    assert.are.equal((s1 - s0) * 512, b1 - b0)
    assert.are.equal(n1 - n0, h1 - h0)
    print(("# prom: %d reads, %d bytes; the kernel: %d, %d"):format(n1 - n0, b1 - b0, k1 - k0,
      (s1 - s0) * 512))
    assert.matches('ublk_request_duration_seconds_bucket{dev="' .. id .. '",kind="read",le="%+Inf"} ' .. h1, after)
    -- every device ublk-lua serves, without -n
    rc, after = cli("stats --prom")
    assert.are.equal(0, rc, after)
    assert.matches('ublk_requests_total{dev="' .. id .. '",queue="1",op="read"}', after)
    os.remove("/tmp/ublk-msg.prom")
  end)

  it("stats --prom --listen serves /metrics to a scraper under fio: fio's and the kernel's counts, "
    .. "a device added later, a unix socket, nothing left at SIGTERM", function()
    G.sh("ip link set lo up") -- the guest boots with it down
    local id = add("-t memory -s 16MiB -q 2")
    local url = "http://127.0.0.1:19850/metrics"
    local tcp = G.spawn("stats --prom --listen 127.0.0.1:19850")
    assert.truthy(tcp:wait_output("serving (http://%S+)", 30), tcp:err())
    local sock = "/tmp/ublk-msg-metrics.sock"
    local unix = G.spawn(("stats --prom -n %d --listen %s"):format(id, sock))
    assert.truthy(unix:wait_output("serving /metrics on the unix socket", 30), unix:err())
    local function scrape(how)
      local ok, text = G.sh("curl -sS --fail --max-time 10 %s", how)
      assert.is_true(ok, text)
      return text
    end
    local function reads(text, dev)
      local n, bytes = 0, 0
      for v in text:gmatch('ublk_requests_total{dev="' .. dev .. '",queue="%d+",op="read"} (%d+)') do
        n = n + tonumber(v)
      end
      for v in text:gmatch('ublk_bytes_total{dev="' .. dev .. '",queue="%d+",direction="read"} (%d+)') do
        bytes = bytes + tonumber(v)
      end
      return n, bytes
    end
    local function kernel_reads()
      local f = G.read_file(("/sys/block/ublkb%d/stat"):format(id))
      local r, _, sectors = f:match("^%s*(%d+)%s+(%d+)%s+(%d+)")
      return tonumber(r), tonumber(sectors) * 512
    end
    local k0, kb0 = kernel_reads()
    local n0, b0 = reads(scrape(url), id)
    -- fio reads 2048 blocks of 4 KiB over about 4 s while the scraper asks
    -- every 0.1 s (a scrape and its sleep take 0.25 s under TCG):
    -- every answer whole, the count never going back
    local fio = G.spawn(("fio --name=r --filename=/dev/ublkb%d --ioengine=io_uring --direct=1 "
      .. "--rw=randread --bs=4k --iodepth=8 --size=16M --io_size=8M --rate_iops=500 "
      .. "--output-format=json"):format(id), true)
    local seen, last = 0, n0
    while not fio:exited() do
      local n = reads(scrape(url), id)
      assert.truthy(n >= last, ("the read count went back from %d to %d"):format(last, n))
      seen, last = seen + 1, n
      G.sh("sleep 0.1")
    end
    assert.are.equal(0, fio:wait(60), fio:err())
    local ios = tonumber(fio:out():match('"total_ios"%s*:%s*(%d+)'))
    fio:cleanup()
    local k1, kb1 = kernel_reads()
    local text = scrape(url)
    local n1, b1 = reads(text, id)
    assert.truthy(seen >= 3, "scraped while fio ran: " .. seen)
    assert.are.equal(2048, ios)
    -- fio's, and whatever else read the disk meanwhile (a udev probe):
    -- the kernel counted both
    assert.truthy(n1 - n0 >= ios and b1 - b0 >= ios * 4096, text)
    assert.are.equal(k1 - k0, n1 - n0, text)
    assert.are.equal(kb1 - kb0, b1 - b0, text)
    print(("# /metrics: %d reads, %d bytes, %d scrapes during fio; fio: %d; the kernel: %d, %d")
      :format(n1 - n0, b1 - b0, seen, ios, k1 - k0, kb1 - kb0))
    -- the same counters through the unix socket (device id only)
    local u = scrape(("--unix-socket %s http://localhost/metrics"):format(sock))
    assert.are.equal(n1, (reads(u, id)))
    -- a device added after the exporter started is in its next scrape
    local id2 = add("-t null -s 8MiB")
    assert.matches('ublk_requests_total{dev="' .. id2 .. '",queue="0",op="read"}', scrape(url))
    assert.not_matches('dev="' .. id2 .. '"', scrape(("--unix-socket %s http://localhost/metrics"):format(sock)))
    -- anything but GET /metrics (and /) is refused with its status
    local _, code = G.sh("curl -s -o /dev/null -w '%%{http_code}' %s/nothing", url:gsub("/metrics$", ""))
    assert.are.equal("404", code)
    _, code = G.sh("curl -s -o /dev/null -w '%%{http_code}' -X POST %s", url)
    assert.are.equal("405", code)
    -- SIGTERM: exit 0, the socket file gone, the port free for the next
    tcp:kill("TERM")
    unix:kill("TERM")
    assert.are.equal(0, tcp:wait(10), tcp:err())
    assert.are.equal(0, unix:wait(10), unix:err())
    assert.is_false((G.sh("test -e %s", sock)))
    tcp:cleanup()
    unix:cleanup()
    local again = G.spawn("stats --prom --listen 127.0.0.1:19850")
    assert.truthy(again:wait_output("serving (http://%S+)", 30), again:err())
    again:kill("TERM")
    assert.are.equal(0, again:wait(10), again:err())
    again:cleanup()
  end)

  it("shows a Lua backend's own counters in stats, --prom and /metrics, as many as it counted", function()
    local script = "/tmp/ublk-msg-counters.lua"
    G.write_file(script, [[
local ublk = require "ublk"
return { queues = 2, backend = ublk.backend {
  size = "8MiB",
  counters = { reads = "counter", last_read_kib = "gauge" },
  read = function(self, req)
    self.counters.reads = self.counters.reads + 1
    self.counters.last_read_kib = req.length / 1024
    return true
  end,
} }
]])
    local id = add(script)
    local function kernel_reads()
      return tonumber(G.read_file(("/sys/block/ublkb%d/stat"):format(id)):match("^%s*(%d+)"))
    end
    local function counted(text)
      local n = 0
      for v in text:gmatch('ublk_backend_reads_total{dev="' .. id .. '",queue="%d+"} (%d+)') do
        n = n + tonumber(v)
      end
      return n
    end
    local k0 = kernel_reads()
    local _, before = cli("stats --prom -n %d", id)
    G.must("dd if=/dev/ublkb%d of=/dev/null bs=8192 count=100 iflag=direct status=none", id)
    local rc, after = cli("stats --prom -n %d", id)
    assert.are.equal(0, rc, after)
    local k1 = kernel_reads()
    assert.truthy(counted(after) - counted(before) >= 100, after)
    assert.are.equal(k1 - k0, counted(after) - counted(before), after)
    assert.matches("# TYPE ublk_backend_last_read_kib gauge", after, 1, true)
    assert.matches('ublk_backend_last_read_kib{dev="' .. id .. '",queue="%d"} 8\n', after)
    -- the text: the totals' line names both
    local text
    rc, text = cli("stats -n %d", id)
    assert.are.equal(0, rc, text)
    assert.matches("since start[^\n]*\n.-\n  backend  last_read_kib %d+, reads " .. counted(after), text)
    print(("# backend counted %d reads, the kernel %d"):format(counted(after) - counted(before), k1 - k0))
    os.remove(script)
  end)

  it("logs a handler's failure in the ready lines' shape, its traceback on the lines after", function()
    local script = "/tmp/ublk-msg-fail.lua"
    G.write_file(script, [[
local ublk = require "ublk"
return { backend = ublk.backend {
  size = "8MiB",
  read = function(self, req)
    if req.offset == 4096 then error("sector 8 is cursed") end
    return true
  end,
  write = function(self, req) return undefined_counter end,
} }
]])
    local id, pid = add(script)
    -- a global the queue's state lacks: named at creation, with its line
    local said = log_of(pid)
    assert.matches(("ublk%%-lua%%[%d%%]: warning: the backend%%.write %%(%s:8%%) reads the global "
      .. "'undefined_counter', which a queue's Lua state does not have"):format(pid,
      (script:gsub("%p", "%%%0"))), said)
    assert.matches(("ublk%%-lua%%[%d%%]: /dev/ublkb%d ready"):format(pid, id), said)
    assert.is_false(G.sh("dd if=/dev/ublkb%d of=/dev/null bs=4096 skip=1 count=1 iflag=direct status=none", id))
    said = log_of(pid)
    local lines = {}
    for l in said:gmatch("[^\n]+") do lines[#lines + 1] = l end
    local at
    for i, l in ipairs(lines) do
      if l:match(("^ublk%%-lua%%[%d%%]: error: dev %d queue 0 tag %%d+: read handler failed: .*"
        .. "sector 8 is cursed$"):format(pid, id)) then at = i break end
    end
    assert.truthy(at, said)
    assert.are.equal("    stack traceback:", lines[at + 1], said)
    assert.are.equal("      [C]: in function 'error'", lines[at + 2], said)
    assert.matches("^      /tmp/ublk%-msg%-fail%.lua:5: ", lines[at + 3], said)
    assert.falsy(said:find("|", 1, true), said)
    -- the failure counts by its errno (a raised handler fails with EIO),
    -- and nothing is left in flight
    local rc, prom = cli("stats --prom -n %d", id)
    assert.are.equal(0, rc, prom)
    local eio = 0
    for v in prom:gmatch('ublk_request_errno_total{dev="' .. id .. '",queue="%d+",errno="EIO"} (%d+)') do
      eio = eio + tonumber(v)
    end
    assert.truthy(eio >= 1, prom)
    assert.not_matches('ublk_requests_inflight{dev="' .. id .. '",queue="%d+"} [1-9]', prom)
    os.remove(script)
  end)
end)
