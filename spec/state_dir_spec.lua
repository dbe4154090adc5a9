-- Where a process keeps its devices' records (runtime/include/state.h):
-- root's shared folder; a user's own, from $XDG_RUNTIME_DIR or in /tmp,
-- never a folder someone else made.  Run as other users with setpriv, so
-- as root only (as every host spec is in CI).
local sh = require("shell").run

-- core.state_dir() in a new process as uid, with env before it
local function state_dir(uid, env)
  local cmd = ("%s luajit -e 'package.cpath=\"./build/?.so;\"..package.cpath "
    .. "io.write(require(\"ublk.core\").state_dir())'"):format(env or "")
  if uid then
    cmd = ("setpriv --reuid=%d --regid=%d --clear-groups env -u XDG_RUNTIME_DIR %s"):format(
      uid, uid, cmd)
  end
  local rc, out = sh(cmd .. " 2>&1")
  assert.are.equal(0, rc, out)
  return out
end

describe("the state directory", function()
  local xdg

  setup(function()
    xdg = os.tmpname()
    os.remove(xdg)
    assert.are.equal(0, (sh(("mkdir -m 700 %s && chown 4242:4242 %s"):format(xdg, xdg))))
  end)
  teardown(function()
    sh(("rm -rf %s /tmp/ublk-lua-4242 /tmp/ublk-lua-4243"):format(xdg))
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
    local rc, out = sh("setpriv --reuid=4243 --regid=4243 --clear-groups env -u XDG_RUNTIME_DIR "
      .. "luajit -e 'package.cpath=\"./build/?.so;\"..package.cpath "
      .. "io.write(require(\"ublk.core\").state_dir())' 2>&1")
    assert.are.equal(0, rc, out)
    assert.matches("state directory /tmp/ublk-lua-4243 is not a folder of uid 4243's that only it "
      .. "can write: no records will be kept", out, 1, true)
    assert.matches("/nonexistent/ublk%-lua$", out)
  end)
end)
