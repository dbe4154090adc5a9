-- A C backend built outside the tree: `make install` into a scratch root,
-- examples/c built there against the installed header through pkg-config
-- (as a user would, nothing of the build tree on its include path), then
-- served on a host queue (ublk.host: the runtime's real request path on
-- this machine's io_uring) and checked by its bytes.  Plugins built for
-- another contract version, or without the symbols the runtime looks up,
-- are refused by name before anything is made.
local ublk = require "ublk"
local host = require "ublk.host"
local args = require "ublk.cli_args"

-- Runs a shell command (raising on failure): not under the sanitizers'
-- LD_PRELOAD, which spec/harness/run-host sets for this process, not for make.
local function sh(fmt, ...)
  local cmd = fmt:format(...)
  local p = io.popen("unset LD_PRELOAD ASAN_OPTIONS; " .. cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  assert(rc == 0, cmd .. "\n" .. out)
  return out
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function bytes(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char((seed * 31 + i * 7) % 256) end
  return table.concat(t)
end

describe("a C backend as a plugin", function()
  local dir, so, t0

  setup(function()
    t0 = os.clock()
    dir = os.tmpname()
    os.remove(dir)
    sh("mkdir -p %s/src && cp examples/c/ramlat.c examples/c/Makefile %s/src", dir, dir)
    sh("make -s install DESTDIR=%s/root PREFIX=/usr", dir)
    -- out of tree: only the installed header, found by pkg-config
    sh("cd %s/src && PKG_CONFIG_PATH=%s/root/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=%s/root"
      .. " make -s CFLAGS=-O2", dir, dir, dir)
    so = dir .. "/src/ramlat.so"
  end)

  teardown(function()
    sh("rm -rf %s", dir)
    print(("# plugin_spec: %.2f s CPU"):format(os.clock() - t0))
  end)

  -- a plugin from `body`, built against the installed header
  local function build(name, body)
    local c = ("%s/%s.c"):format(dir, name)
    local f = assert(io.open(c, "w"))
    f:write("#include <ublk-lua/backend.h>\n", body)
    f:close()
    sh("cc -shared -fPIC -I%s/root/usr/include -o %s/%s.so %s", dir, dir, name, c)
    return ("%s/%s.so"):format(dir, name)
  end

  it("is installed with its header and pkg-config file, ABI recorded", function()
    local pc = slurp(dir .. "/root/usr/lib/pkgconfig/ublk-lua-backend.pc")
    local h = slurp(dir .. "/root/usr/include/ublk-lua/backend.h")
    local abi = h:match("#define UBLK_BACKEND_ABI (%d+)")
    assert.truthy(abi)
    assert.matches("\nabi=" .. abi .. "\n", pc)
    assert.truthy(io.open(dir .. "/root/usr/include/ublk-lua/ublk_uapi.h"))
  end)

  it("serves a device table's bytes, with its own options checked and applied", function()
    local report = dir .. "/report"
    local q = assert(host.queue("plugin", { size = "1MiB", path = so, fill = 7, report = report }))
    -- never written: the fill byte
    assert.are.equal(("\7"):rep(4096), q:read(65536, 4096))
    local a, b = bytes(65536, 1), bytes(4096, 2)
    assert(q:write(0, a))
    assert(q:write(1048576 - 4096, b))
    assert.are.equal(a, q:read(0, 65536))
    assert.are.equal(b, q:read(1048576 - 4096, 4096))
    assert.are.equal(("\7"):rep(4096), q:read(65536, 4096))
    q:close()
    -- destroy() wrote the histogram: 4 reads, 2 writes, whatever their buckets
    local reads, writes = 0, 0
    for op, n in slurp(report):gmatch("(%a+) %d+%-%d+ ns: (%d+)") do
      if op == "read" then reads = reads + n else writes = writes + n end
    end
    assert.are.same({ 4, 2 }, { reads, writes })
  end)

  it("is a Lua backend's delegate as ublk.plugin{ path = ..., ... }", function()
    local base = ublk.plugin{ path = so, fill = 0x5a, report = dir .. "/report2" }
    local q = assert(host.queue(ublk.backend{
      read = function(_, req) return base:read(req) end,
      write = function(_, req) return base:write(req) end,
    }, { size = "1MiB" }))
    assert.are.equal(("\90"):rep(4096), q:read(4096, 4096))
    local a = bytes(8192, 3)
    assert(q:write(8192, a))
    assert.are.equal(a, q:read(8192, 8192))
    q:close()
  end)

  it("refuses options its declaration does not allow, naming them", function()
    local ok, err = pcall(host.queue, "plugin", { size = "1MiB", path = so, fill = 256 })
    assert.is_false(ok)
    assert.matches("'fill' = 256: for the plugin backend must be an integer from 0 to 255",
      err, 1, true)
    ok, err = pcall(host.queue, "plugin", { size = "1MiB", path = so, seed = 1 })
    assert.is_false(ok)
    assert.matches("unknown parameter 'seed'", err, 1, true)
    ok, err = pcall(ublk.plugin, { path = so, fill = -1 })
    assert.is_false(ok)
    assert.matches("ublk.plugin: fill = -1: must be an integer from 0 to 255", err, 1, true)
  end)

  it("lists its options under add -t plugin --path X --help", function()
    local o, what, text = args.parse("add", { "add", "-t", "plugin", "--path", so, "--help" })
    assert.is_nil(o)
    assert.are.equal("help", what)
    assert.matches("--fill N", text, 1, true)
    assert.matches("--report REPORT", text, 1, true)
    o = assert(args.parse("add", { "add", "-t", "plugin", "--path", so, "--fill", "9", "-s", "1M" }))
    assert.are.same({ path = so, fill = 9 }, o.options)
  end)

  it("refuses a plugin built for another ABI by name", function()
    local bad = build("abi", [[
static const struct ublk_backend_ops ops = { .name = "x" };
const unsigned ublk_backend_abi = UBLK_BACKEND_ABI + 1;
const struct ublk_backend_ops *const ublk_backend_plugin = &ops;
]])
    local abi = tonumber(slurp(dir .. "/root/usr/include/ublk-lua/backend.h")
      :match("#define UBLK_BACKEND_ABI (%d+)"))
    local ok, err = pcall(host.queue, "plugin", { size = "1MiB", path = bad })
    assert.is_false(ok)
    assert.matches(("plugin %s was built for backend ABI %d, this ublk-lua has %d")
      :format(bad, abi + 1, abi), err, 1, true)
    ok, err = pcall(ublk.plugin, { path = bad })
    assert.is_false(ok)
    assert.matches("was built for backend ABI", err, 1, true)
  end)

  it("refuses a plugin whose option is named like a device field", function()
    local clash = build("clash", [[
static const struct ublk_backend_opt opts[] = {
	{ .name = "queues", .kind = UBLK_OPT_INT, .min = 1, .max = 8, .help = "its own queues" },
	{ 0 }
};
static int create(struct ublk_backend *b, const struct ublk_backend_conf *c) { (void)b; (void)c; return 0; }
static void destroy(struct ublk_backend *b) { (void)b; }
static int handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{ (void)b; (void)q; (void)io; return 0; }
static const struct ublk_backend_ops ops = { .name = "clash", .opts = opts, .create = create,
	.destroy = destroy, .handle_io = handle_io };
UBLK_BACKEND_PLUGIN(ops);
]])
    local ok, err = pcall(host.queue, "plugin", { size = "1MiB", path = clash })
    assert.is_false(ok)
    assert.matches(("bad parameter 'path' = \"%s\": the plugin declares an option 'queues',"
      .. " which is the name of a device field"):format(clash), err, 1, true)
  end)

  it("refuses a plugin missing either symbol, naming it", function()
    local no_ops = build("noops", "const unsigned ublk_backend_abi = UBLK_BACKEND_ABI;\n")
    local ok, err = pcall(host.queue, "plugin", { size = "1MiB", path = no_ops })
    assert.is_false(ok)
    assert.matches(("plugin %s exports no ublk_backend_plugin"):format(no_ops), err, 1, true)
    local no_abi = build("noabi", [[
static const struct ublk_backend_ops ops = { .name = "x" };
const struct ublk_backend_ops *const ublk_backend_plugin = &ops;
]])
    ok, err = pcall(host.queue, "plugin", { size = "1MiB", path = no_abi })
    assert.is_false(ok)
    assert.matches(("plugin %s exports no ublk_backend_abi"):format(no_abi), err, 1, true)
    ok, err = pcall(host.queue, "plugin", { size = "1MiB", path = dir .. "/none.so" })
    assert.is_false(ok)
    assert.matches("bad parameter 'path'", err, 1, true)
  end)
end)
