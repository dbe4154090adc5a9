-- Storage stacked on ublk-lua devices, as users build it: md RAID-1 across
-- a memory and a file device (fail, re-add, resync, mismatch_cnt 0), LUKS2
-- and LVM, with the bytes checked through each layer.  The modules come
-- from spec/harness/vm/lib.sh (VM_STACK_MODULES; UBLK_VM_MODULES adds more).
-- No udev in the guest: device-mapper and LVM are told not to wait for it.
local G = require "guest"

-- bounded: a tool waiting for a udev that never answers fails, not hangs
local NOUDEV = "DM_DISABLE_UDEV=1 timeout 120 "
-- nor write metadata backups: /etc is the host's, read-only
local LVMCONF = "--config 'activation { udev_sync = 0 udev_rules = 0 } devices { "
  .. "obtain_device_list_from_udev = 0 } backup { backup = 0 archive = 0 }'"

describe("#guest stacked storage", function()
  after_each(function()
    G.sh("umount /tmp/ublk-stack-mnt 2>/dev/null; mdadm --stop /dev/md9 2>/dev/null")
    G.sh(NOUDEV .. "cryptsetup close ublkcrypt 2>/dev/null")
    G.sh(NOUDEV .. "vgremove -f " .. LVMCONF .. " ublkvg 2>/dev/null")
    G.no_leftovers()
  end)

  it("runs md RAID-1 across a memory and a file device: fail, re-add, resync clean", function()
    local a = G.device{ size = "64MiB" }
    local b = G.device{ backend = "file", path = "/tmp/ublk-raid.img", size = "64MiB", create = true }
    G.must("timeout 120 mdadm --create /dev/md9 --run --level=1 --raid-devices=2 --metadata=1.2 "
      .. "--assume-clean %s %s", a.path, b.path)
    local md5 = G.write_random_at("/dev/md9", 1048576, 4 * 1048576)
    G.must("mdadm /dev/md9 --fail %s --remove %s", b.path, b.path)
    local md5b = G.write_random_at("/dev/md9", 8 * 1048576, 1048576)
    G.must("mdadm --zero-superblock %s && mdadm /dev/md9 --add %s", b.path, b.path)
    G.must("timeout 300 sh -c 'while grep -q recovery /proc/mdstat; do sleep 0.2; done'")
    G.must("echo check > /sys/block/md9/md/sync_action")
    G.must("timeout 300 sh -c 'while grep -q check /proc/mdstat; do sleep 0.2; done'")
    assert.are.equal("0", G.read_file("/sys/block/md9/md/mismatch_cnt"):match("%d+"))
    assert.are.equal(md5, G.md5_at("/dev/md9", 1048576, 4 * 1048576))
    assert.are.equal(md5b, G.md5_at("/dev/md9", 8 * 1048576, 1048576))
    G.must("mdadm --stop /dev/md9")
    assert.are.equal(0, a:stats().total.errors + b:stats().total.errors)
    os.remove("/tmp/ublk-raid.img")
  end)

  it("serves LUKS2 (dm-crypt) and LVM on ublk devices, bytes intact", function()
    local c = G.device{ size = "64MiB", queues = 2 }
    G.must("head -c 64 /dev/urandom > /tmp/ublk-key")
    -- pbkdf2 with few iterations: argon2's memory-hard default is slow under TCG
    G.must(NOUDEV .. "cryptsetup luksFormat -q --type luks2 --sector-size 512 --pbkdf pbkdf2 "
      .. "--pbkdf-force-iterations 1000 --key-file /tmp/ublk-key %s", c.path)
    G.must(NOUDEV .. "cryptsetup open --key-file /tmp/ublk-key %s ublkcrypt", c.path)
    local md5 = G.write_random_at("/dev/mapper/ublkcrypt", 65536, 1048576)
    assert.are.equal(md5, G.md5_at("/dev/mapper/ublkcrypt", 65536, 1048576))
    -- what reached the ublk device is ciphertext, not the plaintext
    assert.are_not.equal(md5, G.md5_at(c.path, 16 * 1048576 + 65536, 1048576))
    G.must(NOUDEV .. "cryptsetup close ublkcrypt")
    G.must(NOUDEV .. "cryptsetup open --key-file /tmp/ublk-key %s ublkcrypt", c.path)
    assert.are.equal(md5, G.md5_at("/dev/mapper/ublkcrypt", 65536, 1048576))
    G.must(NOUDEV .. "cryptsetup close ublkcrypt")
    os.remove("/tmp/ublk-key")

    local l = G.device{ size = "64MiB" }
    G.must(NOUDEV .. "pvcreate -q %s %s", LVMCONF, l.path)
    G.must(NOUDEV .. "vgcreate -q %s ublkvg %s", LVMCONF, l.path)
    G.must(NOUDEV .. "lvcreate -q -y -Zn -L 16M -n lv %s ublkvg", LVMCONF)
    G.must(NOUDEV .. "vgmknodes %s ublkvg", LVMCONF)
    local lv = "/dev/ublkvg/lv"
    local md5l = G.write_random_at(lv, 4096, 1048576)
    assert.are.equal(md5l, G.md5_at(lv, 4096, 1048576))
    G.must("mkfs.ext4 -q %s && mkdir -p /tmp/ublk-stack-mnt && mount %s /tmp/ublk-stack-mnt", lv, lv)
    G.must("cp -a /usr/share/lua /tmp/ublk-stack-mnt/ && umount /tmp/ublk-stack-mnt")
    local ok, out = G.sh("e2fsck -fn %s", lv)
    assert(ok, out)
    G.must(NOUDEV .. "vgremove -f %s ublkvg", LVMCONF)
  end)
end)
