#!/bin/bash
# examples/demo.sh: the life of a ublk-lua disk, as root on a ublk kernel.
# Serves examples/mydisk.lua, puts ext4 on it, writes files, reads them
# back by checksum after a remount, then removes the device with SIGINT.
# Run: sudo examples/demo.sh   (make run does it in a guest when needed)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${UBLK_LUA_BIN:-build/ublk-lua}
out=$(mktemp) mnt=$(mktemp -d)
"$bin" examples/mydisk.lua > "$out" &
pid=$!
trap 'kill $pid 2>/dev/null || true; umount "$mnt" 2>/dev/null || true' EXIT

# the CLI prints the path only once the device is usable
timeout 30 sh -c "until grep -q ready '$out'; do sleep 0.05; done"
cat "$out"
dev=$(grep -o '/dev/ublkb[0-9]*' "$out" | head -n1)

echo "== mkfs.ext4 $dev and mount it"
mkfs.ext4 -q -F "$dev"
mount "$dev" "$mnt"
echo "== write 32 files of random data"
mkdir "$mnt/data"
for i in $(seq 1 32); do head -c $((i * 37 * 1024)) /dev/urandom > "$mnt/data/f$i"; done
(cd "$mnt/data" && md5sum f* > /tmp/demo.md5)
echo "== unmount, drop caches, remount, and check every byte"
umount "$mnt"
echo 3 > /proc/sys/vm/drop_caches
mount "$dev" "$mnt"
(cd "$mnt/data" && md5sum --quiet -c /tmp/demo.md5) && echo "all 32 files read back intact"
umount "$mnt"

echo "== SIGINT removes the device"
kill -INT $pid
wait $pid
cat "$out" | tail -n1
if ls /sys/block | grep -q ublkb; then echo "device left behind!"; exit 1; fi
echo "demo passed: no ublk device left"
