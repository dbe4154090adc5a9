#!/bin/sh
# bench/crash-overhead.sh: what recording costs (docs/crash-testing.md):
# fio 4k randwrite QD64 on a memory device, then on the same device with
# the recorder over it (log on /tmp), in one guest boot, one line.
#   flock /tmp/ublk-guest.lock env UBLK_VM_KERNEL=trixie spec/harness/vm/run sh bench/crash-overhead.sh
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
# the recorder moves data through the tag buffers: the same copy mode
# without it is the recorder's own cost
echo 'return { size = "256MiB", recovery = false, backend = require("ublk").memory{ copy = "buffer" } }' \
	> /tmp/ublk-crash-buffer.lua
out=$("$bin" add /tmp/ublk-crash-buffer.lua)
id=$(echo "$out" | sed -n 's/^dev id \([0-9]*\):.*/\1/p')
buffer=$(iops "/dev/ublkb$id")
"$bin" del -n "$id" >/dev/null
rec=$(one --record "$log")
size=$(stat -c %s "$log")
rm -f "$log"
awk -v p="$plain" -v b="$buffer" -v r="$rec" -v k="$(uname -r)" -v s="$size" 'BEGIN {
	printf "crash-overhead %s: 4k randwrite QD64: memory %d IOPS, memory copy=buffer %d, recorded %d (%.2fx memory, %.2fx buffer), log %.0f MiB\n",
		k, p, b, r, r / p, r / b, s / 1048576 }'
