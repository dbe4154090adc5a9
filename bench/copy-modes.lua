-- bench/copy-modes.lua: the copy-mode tables of docs/tuning.md, from one
-- or more `make bench` results (one per kernel), side by side.
--   luajit bench/copy-modes.lua bench/results/DATE-6.12*.json bench/results/DATE-7.3*.json
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local json = require "dkjson"

local runs = {}
for i, path in ipairs(arg) do
  local f = assert(io.open(path))
  runs[i] = assert(json.decode(f:read("*a")))
  f:close()
end

local function cell(R, w, dev) return R.summary[w .. "|" .. dev] end
local function num(R, w, dev, field)
  local c = cell(R, w, dev)
  return c and c[field]
end
local function kernel(R) return R.kernel:match("^(%d+%.%d+)") end

-- "47.0k (0.55x brd), 21 of 40 us CPU/IO" for 4k; "1557 MiB/s (0.75x brd), ..." for 128k
local function show(R, w, dev, base)
  local field = w:find("128k") and "mibs" or "iops"
  local v, b = num(R, w, dev, field), num(R, w, base, field)
  if not v then return "-" end
  local s = field == "iops" and ("%.1fk"):format(v / 1000) or ("%.0f MiB/s"):format(v)
  if b and b > 0 then s = s .. (" (%.2fx %s)"):format(v / b, base) end
  -- the server's CPU per I/O, then the whole guest's (fio + kernel + server)
  local cpu, all = num(R, w, dev, "cpu_ns_per_io"), num(R, w, dev, "all_cpu_ns_per_io")
  if cpu and all then
    s = s .. (", %.0f of %.0f us CPU/IO"):format(cpu / 1000, all / 1000)
  elseif cpu or all then
    s = s .. (", %.0f us CPU/IO%s"):format((cpu or all) / 1000, cpu and "" or " in all")
  end
  return s
end

local function table_of(title, rows, workloads, base)
  print(title)
  print("")
  local head, rule = { "| kernel | row |" }, { "|---|---|" }
  for _, w in ipairs(workloads) do head[#head + 1] = " " .. w .. " |"; rule[#rule + 1] = "---|" end
  print(table.concat(head))
  print(table.concat(rule))
  for _, R in ipairs(runs) do
    for _, dev in ipairs(rows) do
      if cell(R, workloads[1], dev) then
        local row = { ("| %s | %s |"):format(kernel(R), dev) }
        for _, w in ipairs(workloads) do row[#row + 1] = " " .. show(R, w, dev, base) .. " |" end
        print(table.concat(row))
      end
    end
  end
  print("")
end

table_of("**Memory backend by copy mode** (ratio to brd in the same boot)",
  { "brd", "ublk-memory", "ublk-memory-inline", "ublk-memory-ring", "ublk-memory-buffer",
    "ublk-memory-auto_reg" },
  { "randread-4k-qd64-2j", "randread-4k-qd1", "read-128k-qd16", "write-128k-qd16" }, "brd")
table_of("**File backend by copy mode** (tmpfs file; ratio to the loop device over a tmpfs file)",
  { "loop", "ublk-file", "ublk-file-register", "ublk-file-buffer" },
  { "randread-4k-qd64-2j", "randread-4k-qd1", "read-128k-qd16", "write-128k-qd16" }, "loop")
table_of("**Lua RAM disk** (examples/luamem.lua, req:copy into ublk.shared; ratio to the C memory backend)",
  { "ublk-memory", "ublk-lua-memory", "ublk-lua-policy" },
  { "randread-4k-qd64-2j", "read-128k-qd16", "write-128k-qd16" }, "ublk-memory")
