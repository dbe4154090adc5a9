#!/bin/sh
# bench/crash-overhead.sh: what recording costs (docs/crash-testing.md):
# fio 4k randwrite QD64 on a memory device, then on the same device with
# the recorder over it (log on /tmp), in one guest boot, one line.
#   flock /tmp/ublk-guest.lock env UBLK_VM_KERNEL=trixie spec/vm/run sh bench/crash-overhead.sh
# RUNTIME (seconds, 8) per case.
set -eu
cd "$(dirname "$0")/.."
bin=${UBLK_LUA_BIN:-build/ublk-lua}
rt=${RUNTIME:-8}
log=/tmp/ublk-crash-bench.log
iops() {
	fio --name=w --filename="$1" --rw=randwrite --bs=4k --iodepth=64 --ioengine=io_uring \
		--direct=1 --time_based --runtime="$rt" --size=128M --output-format=terse \
		--terse-version=3 2>/dev/null | tail -1 | cut -d';' -f49
}
one() { # add-args... -> iops
	out=$("$bin" add -t memory -s 256MiB -r false "$@")
	id=$(echo "$out" | sed -n 's/^dev id \([0-9]*\):.*/\1/p')
	n=$(iops "/dev/ublkb$id")
	"$bin" del -n "$id" >/dev/null
	echo "$n"
}
rm -f "$log"
plain=$(one)
rec=$(one --record "$log")
size=$(stat -c %s "$log")
rm -f "$log"
awk -v p="$plain" -v r="$rec" -v k="$(uname -r)" -v s="$size" 'BEGIN {
	printf "crash-overhead %s: 4k randwrite QD64 memory %d IOPS, recorded %d IOPS (%.2fx), log %.0f MiB\n",
		k, p, r, r / p, s / 1048576 }'
