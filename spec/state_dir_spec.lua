-- Where a process keeps its devices' records (runtime/include/state.h):
-- root's shared folder; a user's own, from $XDG_RUNTIME_DIR or in /tmp,
-- never a folder someone else made.  Run as other users with setpriv, so
-- as root only (as every host spec is in CI), from a copy of core.so those
-- users can read (a clone in a 0700 folder is not theirs to read).
local sh = require("shell").run

local lib -- the folder with the copy: lib/ublk/core.so

-- The command that prints core.state_dir() as uid (nil: this process's
-- own), with env before it, run from /tmp.
local function state_dir_cmd(uid, env)
  local cmd = ("%s luajit -e 'package.cpath=\"%s/?.so;\"..package.cpath "
    .. "io.write(require(\"ublk.core\").state_dir())'"):format(env or "", lib)
  if uid then
    cmd = ("setpriv --reuid=%d --regid=%d --clear-groups env -u XDG_RUNTIME_DIR %s"):format(
      uid, uid, cmd)
  end
  return "cd /tmp && " .. cmd .. " 2>&1"
end

local function state_dir(uid, env)
  local rc, out = sh(state_dir_cmd(uid, env))
  assert.are.equal(0, rc, out)
  return out
end

describe("the state directory", function()
  local xdg

  setup(function()
    xdg = os.tmpname()
    os.remove(xdg)
    assert.are.equal(0, (sh(("mkdir -m 700 %s && chown 4242:4242 %s"):format(xdg, xdg))))
    lib = os.tmpname()
    os.remove(lib)
    assert.are.equal(0, (sh(("mkdir -p %s/ublk && cp build/ublk/core.so %s/ublk/ && "
      .. "chmod -R a+rX %s"):format(lib, lib, lib))))
  end)
  teardown(function()
    sh(("rm -rf %s %s /tmp/ublk-lua-4242 /tmp/ublk-lua-4243"):format(xdg, lib))
  end)

  it("is /run/ublk-lua for root", function()
    assert.are.equal("/run/ublk-lua", state_dir(nil))
  end)

  it("is the user's runtime folder's ublk-lua, made 0700, for a user", function()
    assert.are.equal(xdg .. "/ublk-lua", state_dir(4242, "XDG_RUNTIME_DIR=" .. xdg))
    local _, mode = sh(("stat -c '%%a %%u' %s/ublk-lua"):format(xdg))
    assert.are.equal("700 4242\n", mode)
  end)

  it("is /tmp/ublk-lua-UID without one, and refused when someone else made it", function()
    sh("rm -rf /tmp/ublk-lua-4242 /tmp/ublk-lua-4243")
    assert.are.equal("/tmp/ublk-lua-4242", state_dir(4242))
    -- another user's folder under the name 4243 would take
    assert.are.equal(0, (sh("mkdir -m 755 /tmp/ublk-lua-4243 && chown 4242 /tmp/ublk-lua-4243")))
    local rc, out = sh(state_dir_cmd(4243))
    assert.are.equal(0, rc, out)
    assert.matches("state directory /tmp/ublk-lua-4243 is not a folder of uid 4243's that only it "
      .. "can write: no records will be kept", out, 1, true)
    assert.matches("/nonexistent/ublk%-lua$", out)
  end)
end)
