-- Devices of a user's own (issue 22, docs/unprivileged.md): a user
-- without root makes, uses and removes a device through the udev rule
-- ublk-lua installs (contrib/udev/70-ublk-lua.rules, run here by a real
-- systemd-udevd); another user can neither see, use nor remove it; what
-- the kernel gives no user's device is refused before any device exists;
-- root still removes it.  The users are bare uids (setpriv): 1000 makes
-- the devices, 1001 is the other user.  They run a copy of the executable
-- and its modules in /run, as one installed would be: the work tree may
-- be a clone in a folder only root may enter (CI's).
local G = require "guest"
local M = require "manage"
local wait_until = M.wait_until

local USER, OTHER = 1000, 1001
local RULES = "/run/udev/rules.d/70-ublk-lua-spec.rules" -- (an installed 70-ublk-lua.rules in /etc would hide one of that name)
local COPY = "/run/ublk-unpriv" -- COPY/bin/ublk-lua finds COPY/lua (runtime/main.c)
local BIN = COPY .. "/bin/ublk-lua"

-- The command line of `cmd` run as uid from /tmp, with a runtime
-- directory of its own as a login session has one.
local function as(uid, cmd, ...)
  if select("#", ...) > 0 then cmd = cmd:format(...) end
  return ("cd /tmp && setpriv --reuid=%d --regid=%d --clear-groups env "
    .. "XDG_RUNTIME_DIR=/run/user/%d %s"):format(uid, uid, uid, cmd)
end

-- `ublk-lua ARGS` as uid: ok, output, status
local function cli_as(uid, args, ...)
  return G.sh(as(uid, BIN .. " " .. args, ...))
end

-- `add ARGS` as uid: the device id, its server's pid and the ready line.
local function add_as(uid, args)
  local ok, out = cli_as(uid, "add " .. args)
  assert.truthy(ok, out)
  local id, pid = out:match("dev id (%d+): /dev/ublkb%d+ .-, pid (%d+)")
  assert.truthy(id, out)
  return tonumber(id), tonumber(pid), out
end

local function owner(path) return tonumber((G.must("stat -c %%u %s", path))) end

-- Every device gone, whoever made it: root deletes each (a user's too).
local function reset()
  for _, l in ipairs(G.leftovers()) do
    local id = l:match("ublkc(%d+)$")
    if id then G.sh("%s del -n %s", G.bin, id) end
  end
  wait_until(function() return #G.leftovers() == 0 end, 10)
end

describe("#guest devices of a user's own", function()
  local udevd, t_start = false, nil

  lazy_setup(function()
    t_start = G.now()
    G.must("rm -rf %s && mkdir -p %s/bin && cp %s %s/bin/ublk-lua && cp -r lua %s/lua && "
      .. "chmod -R a+rX %s", COPY, COPY, G.bin, COPY, COPY, COPY)
    for _, uid in ipairs({ USER, OTHER }) do
      G.must("mkdir -p /run/user/%d && chown %d:%d /run/user/%d && chmod 700 /run/user/%d",
        uid, uid, uid, uid, uid)
    end
  end)

  lazy_teardown(function()
    reset()
    if udevd then G.sh("pkill -f systemd-udevd; rm -f %s", RULES) end
    G.sh("chmod 600 /dev/ublk-control")
    G.sh("rm -rf /run/user/%d /run/user/%d %s", USER, OTHER, COPY)
    print(("# unprivileged_spec: %.1f s"):format(G.now() - t_start))
  end)

  after_each(reset)

  -- Before the rule: nothing a user can do, and no device left trying.
  it("without the udev rule, a user's add is refused by name and leaves nothing", function()
    local ok, out = cli_as(USER, "add -t memory -s 64MiB")
    assert.falsy(ok, out)
    assert.matches("cannot open /dev/ublk-control: Permission denied", out, 1, true)
    assert.matches("udev rule", out, 1, true)
    assert.are.same({}, G.leftovers())
  end)

  -- From here a real udevd applies the rule, as on a machine that has it
  -- installed: /dev/ublk-control turns 0666 when it loads its rules.
  it("the rule gives a user's device to that user, who writes, checks and removes it", function()
    G.must("mkdir -p /run/udev/rules.d")
    G.must("sed 's|/usr/local/bin/ublk-lua|%s|' contrib/udev/70-ublk-lua.rules > %s", BIN, RULES)
    G.must("/lib/systemd/systemd-udevd --daemon")
    udevd = true
    assert.truthy(wait_until(function()
      return G.must("stat -c %%a %s", "/dev/ublk-control"):match("^666") ~= nil
    end, 10), "udevd did not apply the rule to /dev/ublk-control")

    local id, pid, line = add_as(USER, "-t memory -s 64MiB -q 2")
    local dev = "/dev/ublkb" .. id
    assert.matches("buffer copy, uid 1000's", line, 1, true)
    -- the ready line came once the disk was the user's
    assert.are.equal(USER, owner(dev))
    assert.are.equal(USER, owner("/dev/ublkc" .. id))
    assert.matches("^600", G.must("stat -c %%a %s", dev))

    -- the user's own fio, O_DIRECT, through the disk: every byte checked
    local ok, out = G.sh(as(USER, "fio --name=v --filename=%s --ioengine=libaio --direct=1 "
      .. "--rw=randwrite --bs=4k --iodepth=16 --size=32M --verify=crc32c --do_verify=1 "
      .. "--verify_fatal=1 --verify_state_save=0"), dev)
    assert.truthy(ok, out)
    assert.matches("err= 0", out, 1, true)
    local _, md5_user = G.sh(as(USER, "md5sum %s", dev))
    assert.are.equal(G.must("md5sum %s", dev), md5_user)

    -- the user's list shows it with its server; root's shows whose it is
    local _, mine = cli_as(USER, "list")
    assert.matches(("dev id %d: LIVE, 64 MiB, 2 queues x 128, .- memory, pid %d %%(running%%)")
      :format(id, pid), mine)
    local _, roots = G.sh("%s list -n %d", G.bin, id)
    assert.matches(("pid %d, uid 1000's"):format(pid), roots, 1, true)
    assert.matches("unprivileged_dev", roots, 1, true)
    -- no recovery for a user's device, so nothing is kept in /dev/shm
    assert.matches("recoverable\": false", select(2, cli_as(USER, "list -n %d --json", id)), 1, true)

    ok, out = cli_as(USER, "del -n %d", id)
    assert.truthy(ok, out)
    assert.matches(("dev id %d: removed (its server, pid %d, ended)"):format(id, pid), out, 1, true)
    assert.are.same({}, G.leftovers())
    -- its records went with it; only the servers' log stays
    assert.are.equal("server.log\n", select(2, G.sh("ls /run/user/%d/ublk-lua", USER)))
  end)

  it("another user can neither see, open nor remove it", function()
    local id, pid = add_as(USER, "-t memory -s 64MiB")
    local dev = "/dev/ublkb" .. id
    local md5 = G.write_random_at(dev, 0, 1048576)

    local ok, out = cli_as(OTHER, "list")
    assert.truthy(ok, out)
    assert.are.equal("no ublk devices\n", out)
    ok, out = cli_as(OTHER, "del -n %d", id)
    assert.falsy(ok, out)
    assert.matches("it is another user's (or root's), and only they may touch it", out, 1, true)
    ok, out = G.sh(as(OTHER, "dd if=%s of=/dev/null bs=4k count=1"), dev)
    assert.falsy(ok, out)
    assert.matches("Permission denied", out, 1, true)
    -- the owner's device is as it was
    assert.truthy(M.alive(pid))
    assert.are.equal(md5, G.md5_at(dev, 0, 1048576))
  end)

  it("refuses what the kernel gives no user's device before any device exists", function()
    local cases = {
      { "-r reissue", "recovery needs USER_RECOVERY_REISSUE, which a device made without root "
        .. "(CAP_SYS_ADMIN) cannot have: use recovery = false" },
      { "--copy inline", "needs UBLK_F_USER_COPY (Linux 6.5+), which a device made without root "
        .. "(CAP_SYS_ADMIN) cannot have" },
      { "--restart 2", "add --restart 2: restarting a server takes recovery, which a device made "
        .. "without root (CAP_SYS_ADMIN) cannot have" },
    }
    for _, c in ipairs(cases) do
      local ok, out = cli_as(USER, "add -t memory -s 64MiB %s", c[1])
      assert.falsy(ok, c[1] .. ": " .. out)
      assert.matches(c[2], out, 1, true)
      assert.are.same({}, G.leftovers(), c[1])
    end
  end)

  it("root removes a user's device by ending its server", function()
    local id, pid = add_as(USER, "-t null -s 64MiB")
    local ok, out = G.sh("%s del -n %d", G.bin, id)
    assert.truthy(ok, out)
    assert.matches(("dev id %d: removed (its server, pid %d, ended)"):format(id, pid), out, 1, true)
    assert.falsy(M.alive(pid))
    assert.are.same({}, G.leftovers())
  end)

  it("a user's server killed by SIGKILL leaves a DEAD device, which the user's next server removes", function()
    local id, pid = add_as(USER, "-t memory -s 64MiB")
    G.must("kill -9 %d", pid)
    assert.truthy(wait_until(function()
      return select(2, cli_as(USER, "list -n %d", id)):match(": DEAD,") ~= nil
    end, 10), "not DEAD")
    local id2, _, line = add_as(USER, "-t memory -s 64MiB")
    assert.are.equal(id, id2, line) -- the dead one's id was freed first
    local _, log = G.sh("cat /run/user/%d/ublk-lua/server.log", USER)
    assert.matches(("removing device %d, left by a server that ended without removing it "
      .. "(pid %d)"):format(id, pid), log, 1, true)
  end)
end)
