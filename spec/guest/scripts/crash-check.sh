#!/bin/sh
# crash-check.sh IMAGE MARKS: the check crash_spec.lua gives `ublk-lua
# crashtest` for an ext4 image of a power-cut state.  Replays the journal
# (as a mount would), then e2fsck -fn must find nothing, then every file a
# mark in MARKS ("NAME MD5", one a line) reported durable must be there
# with those bytes.  Exit 0 pass, 1 fail (saying why).
set -u
img=$1
marks=$2
e2fsck -E journal_only -p "$img" >/dev/null 2>&1
rc=$?
if [ $rc -gt 1 ]; then echo "crash-check: journal replay: e2fsck exit $rc"; exit 1; fi
if ! out=$(e2fsck -fn "$img" 2>&1); then
	echo "crash-check: e2fsck -fn:"; echo "$out" | head -20; exit 1
fi
[ -s "$marks" ] || exit 0
mnt=$(mktemp -d)
if ! mount -o loop,ro "$img" "$mnt"; then echo "crash-check: mount failed"; rmdir "$mnt"; exit 1; fi
sh "$(dirname "$0")/durable-files.sh" "$mnt" "$marks" crash-check
status=$?
umount "$mnt"
rmdir "$mnt"
exit $status
