#!/bin/sh
# sqlite-check.sh IMAGE MARKS: the check crash_spec.lua gives `ublk-lua
# crashtest` for an ext4 image holding a SQLite database (db, in WAL mode)
# of a power-cut state.  Replays the ext4 journal (as a mount would),
# copies the database out (SQLite's own recovery writes), then the copy
# must pass PRAGMA integrity_check and hold every commit a mark in MARKS
# reported durable (the marks are the commit numbers, the last the
# highest).  Exit 0 pass, 1 fail (saying why).
set -u
img=$1
marks=$2
want=$(tail -n 1 "$marks")
e2fsck -E journal_only -p "$img" >/dev/null 2>&1
rc=$?
if [ $rc -gt 1 ]; then echo "sqlite-check: journal replay: e2fsck exit $rc"; exit 1; fi
mnt=$(mktemp -d)
work=$(mktemp -d)
if ! mount -o loop,ro "$img" "$mnt"; then echo "sqlite-check: mount failed"; rmdir "$mnt" "$work"; exit 1; fi
cp "$mnt"/db* "$work"/ 2>/dev/null
umount "$mnt"
rmdir "$mnt"
status=0
if [ -n "$want" ]; then
	if [ ! -e "$work/db" ]; then
		echo "sqlite-check: commit $want reported durable, and no database"
		status=1
	else
		out=$(sqlite3 "$work/db" "PRAGMA integrity_check; SELECT coalesce(max(i), 0) FROM t;" 2>&1)
		check=$(echo "$out" | head -n 1)
		got=$(echo "$out" | tail -n 1)
		if [ "$check" != "ok" ]; then
			echo "sqlite-check: integrity_check: $out"
			status=1
		elif [ "$got" -lt "$want" ] 2>/dev/null; then
			echo "sqlite-check: commit $want reported durable, the database ends at commit $got"
			status=1
		elif ! [ "$got" -ge 0 ] 2>/dev/null; then
			echo "sqlite-check: $out"
			status=1
		fi
	fi
fi
rm -rf "$work"
exit $status
