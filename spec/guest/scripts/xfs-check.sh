#!/bin/sh
# xfs-check.sh IMAGE MARKS: the check crash_spec.lua gives `ublk-lua
# crashtest` for an XFS image of a power-cut state.  Mounting replays the
# log (the image is a scratch copy); every file a mark in MARKS ("NAME
# MD5", one a line) reported durable must be there with those bytes; then
# xfs_repair -n must find nothing.  Exit 0 pass, 1 fail (saying why).
# nouuid: under --jobs two states of one file system are mounted at once,
# and XFS refuses a second mount of a UUID it has mounted.
set -u
img=$1
marks=$2
mnt=$(mktemp -d)
if ! out=$(mount -t xfs -o loop,nouuid "$img" "$mnt" 2>&1); then
	echo "xfs-check: mount (log recovery) failed: $out"; dmesg | tail -n 5; rmdir "$mnt"; exit 1
fi
sh "$(dirname "$0")/durable-files.sh" "$mnt" "$marks" xfs-check
status=$?
umount "$mnt"
rmdir "$mnt"
if ! out=$(xfs_repair -n "$img" 2>&1); then
	echo "xfs-check: xfs_repair -n:"; echo "$out" | tail -20; status=1
fi
exit $status
