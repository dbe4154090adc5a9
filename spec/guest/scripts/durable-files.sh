#!/bin/sh
# durable-files.sh DIR MARKS WHO: every file a mark in MARKS ("NAME MD5",
# one a line) reported durable is in DIR with those bytes; the power-cut
# checks (crash-check.sh, xfs-check.sh: WHO, the name its lines start with)
# share it.  Exit 0 all there, 1 not (saying which).
set -u
status=0
while read -r name sum; do
	got=$(md5sum < "$1/$name" 2>/dev/null | cut -d' ' -f1)
	if [ "$got" != "$sum" ]; then
		echo "$3: $name reported durable: md5 ${got:-missing}, not $sum"
		status=1
	fi
done < "$2"
exit $status
