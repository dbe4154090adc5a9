-- `reload` under a mounted ext4 with a writer running: a new script that
-- fails before the hand-over (a syntax error, a ublk.shared layout that
-- no longer matches) leaves the old server serving, untouched; one that
-- fails after it (an on_start that raises) gives the device back to the
-- previous script, from the copy the old server ran, even though the file
-- has since been edited.  In every case the writer goes on, its longest
-- pause is printed, and the filesystem checks clean with every byte.
local G = require "guest"
local M = require "manage"
local cli, add, listed, alive, clean = M.cli, M.add, M.listed, M.alive, M.clean

local MNT = "/tmp/ublk-reload"

-- Mounts a fresh ext4 on path and starts a writer that writes and syncs
-- a 64 KiB file after another (50 names, round and round), stamping the
-- time of each; it stops at the first error or when told to.
local function mount_with_writer(path)
  G.must("mkfs.ext4 -q %s && mkdir -p %s && mount %s %s", path, MNT, path, MNT)
  G.must("rm -f /tmp/reload-writer.*")
  G.write_file("/tmp/reload-writer.sh", ([[
set -e
i=0
while [ ! -e /tmp/reload-writer.stop ]; do
  f=%s/f$((i %% 50))
  head -c 65536 /dev/urandom > $f.new
  sync $f.new
  mv $f.new $f
  date +%%s%%N >> /tmp/reload-writer.times
  i=$((i + 1))
done
]]):format(MNT))
  return G.spawn("sh /tmp/reload-writer.sh", true)
end

-- Stops the writer; its exit status, and its longest pause in seconds.
local function stop_writer(writer)
  G.must("touch /tmp/reload-writer.stop")
  local rc = writer:wait(120)
  local last, longest, n = nil, 0, 0
  for t in G.read_file("/tmp/reload-writer.times"):gmatch("%d+") do
    t = tonumber(t) / 1e9
    if last then longest = math.max(longest, t - last) end
    last, n = t, n + 1
  end
  return rc, longest, n, writer:out() .. writer:err()
end

-- Every file reads back as it was written, and fsck finds nothing.
local function check_fs(path)
  G.must("cd %s && md5sum f* > /tmp/reload.md5", MNT)
  G.must("umount %s", MNT)
  G.must("e2fsck -fn %s", path)
  G.must("mount %s %s && cd %s && md5sum -c --quiet /tmp/reload.md5 && cd / && umount %s",
    path, MNT, MNT, MNT)
end

-- The writer is running: wait for it to have written a few files.
local function settle()
  assert.truthy(G.sh("timeout 30 sh -c 'until [ $(wc -l < /tmp/reload-writer.times 2>/dev/null"
    .. " || echo 0) -ge 5 ]; do sleep 0.1; done'"), "the writer wrote nothing")
end

describe("#guest reload", function()
  after_each(function()
    G.sh("touch /tmp/reload-writer.stop")
    M.reset()
    G.sh("rm -rf /tmp/reload-writer.* /tmp/reload.md5 /tmp/reload.img /tmp/reload-*.lua")
  end)

  it("a new script with a syntax error: nothing is handed over, the server serves on, the writer never stops", function()
    G.must("rm -f /tmp/reload.img && truncate -s 64M /tmp/reload.img")
    local id, pid = add("spec/guest/scripts/reloadable.lua v1 /tmp/reload.img")
    local path = "/dev/ublkb" .. id
    local writer = mount_with_writer(path)
    settle()
    G.write_file("/tmp/reload-broken.lua", "return { size = \n")
    local t0 = G.now()
    local rc, out = cli("reload -n %d /tmp/reload-broken.lua", id)
    local secs = G.now() - t0
    assert.are.equal(1, rc, out)
    assert.matches("reload %-n " .. id .. ": the new script failed; nothing was handed over, "
      .. "the server %(pid " .. pid .. "%) serves on: .*reload%-broken%.lua:%d+:", out)
    assert.is_true(alive(pid))
    local d = listed(id)
    assert.are.equal("LIVE", d.state)
    assert.are.equal(pid, d.ublk_lua.pid)
    settle()
    local wrc, longest, n, wout = stop_writer(writer)
    assert.are.equal(0, wrc, wout)
    print(("\n  reload with a syntax error: refused in %.2f s; writer: %d files, longest pause %.2f s")
      :format(secs, n, longest))
    assert.truthy(longest < 10, ("the writer stalled %.1f s"):format(longest))
    check_fs(path)
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)

  it("a changed ublk.shared layout is refused before the hand-over, by name; the data stays", function()
    local id, pid = add("spec/guest/scripts/shared-layout.lua")
    local path = "/dev/ublkb" .. id
    local writer = mount_with_writer(path)
    settle()
    local rc, out = cli("reload -n %d spec/guest/scripts/shared-layout.lua extra", id)
    assert.are.equal(1, rc, out)
    assert.matches("nothing was handed over, the server %(pid " .. pid .. "%) serves on: .*"
      .. "EINVAL: .*holds 67108864 bytes, not the 4096 asked for", out)
    assert.are.equal("LIVE", listed(id).state)
    assert.are.equal(pid, listed(id).ublk_lua.pid)
    settle()
    local wrc, longest, n, wout = stop_writer(writer)
    assert.are.equal(0, wrc, wout)
    print(("\n  reload with another shared layout: writer %d files, longest pause %.2f s"):format(n, longest))
    assert.truthy(longest < 10, ("the writer stalled %.1f s"):format(longest))
    check_fs(path)
    -- and the same layout still reloads
    rc, out = cli("reload -n %d", id)
    assert.are.equal(0, rc, out)
    G.must("mount %s %s && cd %s && md5sum -c --quiet /tmp/reload.md5 && cd / && umount %s",
      path, MNT, MNT, MNT)
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)

  it("an on_start that raises after the hand-over: the previous script (the copy it ran, the file since edited) takes the device back", function()
    G.must("rm -f /tmp/reload.img && truncate -s 64M /tmp/reload.img")
    G.must("cp spec/guest/scripts/reloadable.lua /tmp/reload-script.lua")
    local id, pid = add("/tmp/reload-script.lua v1 /tmp/reload.img")
    local path = "/dev/ublkb" .. id
    assert.are.equal("v1", G.read_file("/tmp/ublk-reload-version"))
    local writer = mount_with_writer(path)
    settle()
    -- the file is edited in place: its on_start now raises
    G.must("sed -i 's/on_start = function()/on_start = function() error(\"broken on_start\")/' "
      .. "/tmp/reload-script.lua")
    G.must("echo stale > /tmp/ublk-reload-version")
    local t0 = G.now()
    local rc, out = cli("reload -n %d", id)
    local secs = G.now() - t0
    assert.are.equal(1, rc, out)
    assert.matches("the new server failed after the hand%-over: .*on_start failed: .*broken on_start", out)
    assert.matches("the previous script serves the devices again", out)
    assert.matches("dev id " .. id .. ": " .. path .. " .*recovered", out)
    -- the old code ran again (its on_start wrote v1), under a new server
    assert.are.equal("v1", G.read_file("/tmp/ublk-reload-version"))
    local d = listed(id)
    assert.are.equal("LIVE", d.state)
    assert.are_not.equal(pid, d.ublk_lua.pid)
    assert.are.equal("running", d.ublk_lua.server)
    assert.falsy(alive(pid))
    settle()
    local wrc, longest, n, wout = stop_writer(writer)
    assert.are.equal(0, wrc, wout)
    print(("\n  reload whose on_start raises: rolled back in %.2f s; writer %d files, longest pause %.2f s")
      :format(secs, n, longest))
    check_fs(path)
    assert.are.equal(0, (cli("del -n %d", id)))
    G.sh("rm -f /tmp/ublk-reload-version")
    clean()
  end)

  it("recover without a script, the recorded one broken since: the copy that last served it recovers the device; list says the script does not compile", function()
    G.must("cp spec/guest/scripts/ro-or-rw.lua /tmp/reload-rw.lua")
    local id, pid = add("/tmp/reload-rw.lua rw")
    local path = "/dev/ublkb" .. id
    local md5 = G.write_random_at(path, 0, 65536)
    G.must("kill -9 %d", pid)
    assert.truthy(M.wait_until(function() return listed(id).state == "QUIESCED" end), "not QUIESCED")
    G.write_file("/tmp/reload-rw.lua", "this is not lua\n")
    local _, lout = cli("list -n %d", id)
    assert.matches("its script does not compile", lout)
    local rc, out = cli("recover -n %d", id)
    assert.are.equal(0, rc, out)
    assert.matches("recovering from the copy of it that last served the device", out)
    assert.matches("dev id " .. id .. ": " .. path .. " .*recovered", out)
    assert.are.equal(md5, G.md5_at(path, 0, 65536))
    assert.are.equal(0, (cli("del -n %d", id)))
    clean()
  end)
end)
