#!/bin/bash
# bench/qd1-placement.sh: where a QD1 request's two wakeups land, and
# what that costs.  4k randread QD1 on the null backend, ours with
# pin = "auto" (the default) and pin = false beside kublk's null (which
# pins), with fio left to the scheduler ("free") and pinned to CPU 0
# ("cpu0", as `make bench` runs it); interleaved rounds, one boot.  Prints
# IOPS, the server's CPU per I/O and the guest's interrupts between CPUs
# (CAL + RES in /proc/interrupts) per thousand I/Os.
#   spec/harness/vm/run bench/qd1-placement.sh     (UBLK_VM_KERNEL picks the kernel)
# Needs build/peers/kublk (bench/peers/build-kublk).  docs/tuning.md has
# what it found.
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${UBLK_QD1_ROUNDS:-3}
out=build/bench-qd1/$(uname -r); rm -rf "$out"; mkdir -p "$out"
modprobe ublk_drv 2>/dev/null || true

declare -A DEV PID
# The ublkb device that was not there before: the one this server made.
new_dev() {
	local d
	for d in $(ls /sys/block | grep ublkb || true); do
		grep -qx "$d" "$out/before" || { echo "/dev/$d"; return; }
	done
}
start() {
	local name=$1 d=
	shift
	ls /sys/block | grep ublkb > "$out/before" || true
	"$@" > "$out/$name.log" 2>&1 &
	PID[$name]=$!
	for _ in $(seq 100); do
		d=$(new_dev)
		[ -n "$d" ] && [ -b "$d" ] && break
		sleep 0.1
	done
	[ -n "$d" ] || { echo "$name: no device (log: $out/$name.log)" >&2; exit 1; }
	DEV[$name]=$d
}
ipis() { awk '/^ *(CAL|RES):/ { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i } END { print s }' /proc/interrupts; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start auto build/ublk-lua bench/device.lua null
start unpinned build/ublk-lua bench/device.lua null - unpinned
start kublk build/peers/kublk add -t null -q 2 -d 128 --foreground
trap 'kill -INT ${PID[auto]} ${PID[unpinned]} 2>/dev/null; build/peers/kublk del -n ${DEV[kublk]##*ublkb} >/dev/null 2>&1 || true' EXIT

hz=$(getconf CLK_TCK)
printf "%-5s %-6s %-9s %6s %12s %15s\n" round fio server IOPS "CPU us/IO" "IPIs per 1k IO" | tee "$out/result"
for round in $(seq "$ROUNDS"); do
	for fio_cpu in free cpu0; do
		for name in auto unpinned kublk; do
			pre=
			[ "$fio_cpu" = cpu0 ] && pre="taskset -c 0"
			t0=$(ticks "${PID[$name]}") i0=$(ipis)
			$pre fio --name=qd1 --filename="${DEV[$name]}" --ioengine=io_uring --direct=1 \
				--rw=randread --bs=4k --iodepth=1 --runtime=5 --time_based \
				--output-format=json > "$out/fio.json"
			t1=$(ticks "${PID[$name]}") i1=$(ipis)
			ios=$(grep -m1 '"total_ios"' "$out/fio.json" | tr -dc '0-9')
			iops=$(grep -m1 '"iops"' "$out/fio.json" | tr -dc '0-9.')
			printf "%-5s %-6s %-9s %6.0f %12d %15d\n" "$round" "$fio_cpu" "$name" "$iops" \
				$(((t1 - t0) * 1000000 / hz / ios)) $(((i1 - i0) * 1000 / ios)) | tee -a "$out/result"
		done
	done
done
