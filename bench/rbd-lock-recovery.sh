#!/bin/bash
# bench/rbd-lock-recovery.sh: how long an image with the exclusive-lock
# feature takes to serve writes again after its server is killed (kill -9,
# then `ublk-lua recover`).  The dead server still owns the lock; a new
# client may take it only once the owner's watch has expired (Ceph's
# osd_client_watch_timeout, 30 s) or once someone breaks it: `rbd lock rm`,
# which also blocklists the dead client.  Four cases, one line each: the
# lock taken at the first write or at start (--exclusive), and nothing done
# or the lock broken before recover.  One cluster, in one guest boot:
#   flock /tmp/ublk-guest.lock env UBLK_VM_KERNEL=trixie spec/harness/vm/run bench/rbd-lock-recovery.sh
# osd_timeout is 60 s here so that the watch's 30 s, not the timeout, shows.
set -eu
cd "$(dirname "$0")/.."
bin=${UBLK_LUA_BIN:-build/ublk-lua}
ip link set lo up
conf=$(spec/harness/ceph/cluster start)
trap 'spec/harness/ceph/cluster stop "$conf"' EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
state() { "$bin" list -n "$1" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["state"])'; }

# one NAME MODE(write|start) HOW(wait|break)
one() {
	local img=rbd/$1 mode=$2 how=$3 out id pid t0 t_rec t_w rc locks
	local excl=""
	[ "$mode" = start ] && excl="--exclusive"
	rbd -c "$conf" create --size 16M --image-feature layering,exclusive-lock "$img"
	out=$("$bin" add -t rbd --image "$img" --conf "$conf" --osd_timeout 60 $excl)
	id=$(echo "$out" | sed -n 's/^dev id \([0-9]*\):.*/\1/p')
	pid=$(echo "$out" | sed -n 's/.*, pid \([0-9]*\).*/\1/p')
	# this write takes the lock (mode write) or finds it taken (start)
	dd if=/dev/urandom of=/dev/ublkb"$id" bs=4k count=1 oflag=direct status=none
	kill -9 "$pid"
	until [ "$(state "$id")" = QUIESCED ]; do sleep 0.1; done
	t0=$(now)
	if [ "$how" = break ]; then
		locks=$(rbd -c "$conf" lock ls "$img" --format json)
		echo "$locks" | python3 -c 'import json, sys
for l in json.load(sys.stdin): print(l["id"] + "\t" + l["locker"])' |
			while IFS=$(printf '\t') read -r lid locker; do
				rbd -c "$conf" lock rm "$img" "$lid" "$locker"
			done
	fi
	"$bin" recover -n "$id" >/tmp/rbd-lock-recover.out 2>&1 || { cat /tmp/rbd-lock-recover.out; return 1; }
	t_rec=$(since "$t0")
	rc=0
	timeout 120 dd if=/dev/urandom of=/dev/ublkb"$id" bs=4k count=1 seek=1 oflag=direct status=none || rc=$?
	t_w=$(since "$t0")
	echo "rbd-lock-recovery $(uname -r): lock at $mode, $how: recover returned in $t_rec s, first write done $t_w s after kill -9 (dd status $rc)"
	"$bin" del -n "$id" >/dev/null
}
one a write wait
one b write break
one c start wait
one d start break
