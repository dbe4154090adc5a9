#!/bin/sh
# bench/crash.sh: the power-cut bench (docs/crash-testing.md), one guest
# boot, `make bench-crash` (UBLK_VM_KERNEL picks the kernel):
# 1. what recording costs: fio 4k randwrite QD64 and 128k write QD16 on a
#    256 MiB memory device, on its copy = "buffer" twin (data through the
#    tag's buffer, as a recorded base without user copy moves it) and
#    recorded, the log on /tmp and on a tmpfs mounted huge=always,
#    UBLK_BENCH_ROUNDS (3) interleaved rounds of UBLK_BENCH_RUNTIME (6)
#    seconds a case, medians, with the server's CPU per I/O, each device's
#    first 128 MiB written before timing;
# 2. states per minute: an ext4 of 256 MiB on a recorded file device, 8
#    files written, fsynced and marked through `ublk-lua mark`, then crashtest
#    with e2fsck -fn and the marked files' checks
#    (spec/guest/scripts/crash-check.sh) on UBLK_BENCH_STATES (16) states, 2 jobs.
# Prints a markdown report and keeps it as bench/results/DATE-KERNEL-crash.md
# (-2, -3, ... when that is taken).
set -eu
cd "$(dirname "$0")/.."
bin=${UBLK_LUA_BIN:-$PWD/build/ublk-lua}
rt=${UBLK_BENCH_RUNTIME:-6}
rounds=${UBLK_BENCH_ROUNDS:-3}
dir=$(mktemp -d /tmp/ublk-crash-bench.XXXXXX)
log=$dir/rec.log
mkdir "$dir/huge"
# the huge tmpfs as large as /tmp (half the guest's memory)
tmp_kib=$(df -k --output=size /tmp | tail -1 | tr -d ' ')
mount -t tmpfs -o huge=always,size="${tmp_kib}k" ublk-crash-bench "$dir/huge"
# The guest's memory, touched once before timing: the emulator backs a
# guest page with host memory at its first touch, and a log is all new
# pages, so without this the first recorded case of a boot paid host page
# faults the later ones did not (1450 against 3000 IOPS at 128k in one
# 6.12 boot).  Filling /tmp touches half of it; the log never needs more.
dd if=/dev/zero of="$dir/fill" bs=1M status=none 2>/dev/null || true
rm -f "$dir/fill"
# A recorded write keeps its data in the log, so a recorded case stops
# after 2 GiB (about 5 s at 128k), or less where /tmp is smaller (half the
# guest's memory: make bench-crash boots 6 GiB), where a time-based run
# would fill /tmp and fail its last writes with EIO; fio's IOPS are then
# over the time it ran.  The margin: the 128 MiB written before timing
# and the entries' heads.
cap_mib=$((tmp_kib / 1024 - 384))
[ "$cap_mib" -gt 2048 ] && cap_mib=2048
fio_run() { # device bs qd how-long -> "IOPS runtime-ms"
	fio --name=w --filename="$1" --rw=$([ "$2" = 4k ] && echo randwrite || echo write) \
		--bs="$2" --iodepth="$3" --ioengine=io_uring --direct=1 --runtime="$rt" "$4" \
		--size=128M --output-format=terse --terse-version=3 2>/dev/null | tail -1 | cut -d';' -f49,50 | tr ';' ' '
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # the server's CPU, all threads
echo 'return { size = "256MiB", recovery = false, backend = require("ublk").memory{ copy = "buffer" } }' \
	> "$dir/buffer.lua"
one() { # case bs qd -> "IOPS us-per-IO"
	upto=--io_size="${cap_mib}m"
	case $1 in
	memory) upto=--time_based; out=$("$bin" add -t memory -s 256MiB -r false) ;;
	buffer) upto=--time_based; out=$("$bin" add "$dir/buffer.lua") ;;
	recorded) out=$("$bin" add -t memory -s 256MiB -r false --record "$log") ;;
	huge) out=$("$bin" add -t memory -s 256MiB -r false --record "$dir/huge/rec.log") ;;
	esac
	id=$(echo "$out" | sed -n 's/^dev id \([0-9]*\):.*/\1/p')
	pid=$(echo "$out" | sed -n 's/.* pid \([0-9]*\).*/\1/p')
	# the region fio writes, written once first: a memory device's first
	# write to a page allocates it, which timed runs would share out over
	# however many writes each case reaches
	dd if=/dev/zero of="/dev/ublkb$id" bs=1M count=128 oflag=direct status=none
	t0=$(ticks "$pid")
	r=$(fio_run "/dev/ublkb$id" "$2" "$3" "$upto")
	t1=$(ticks "$pid")
	"$bin" del -n "$id" >/dev/null
	rm -f "$log" "$dir/huge/rec.log"
	# clock ticks are 10 ms
	set -- $r
	awk -v n="$1" -v ms="$2" -v t="$((t1 - t0))" 'BEGIN { printf "%d %.1f\n", n, t * 10000 / (n * ms / 1000) }'
}
median() { sort -n | awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }'; }
col() { # case bs column -> the median of that column of the runs
	awk -v c="$1" -v b="$2" -v k="$3" '$1 == c && $2 == b { print $k }' "$dir/runs" | median
}
for r in $(seq "$rounds"); do
	for w in "4k 64" "128k 16"; do
		for c in memory buffer recorded huge; do
			set -- $w
			echo "$c $1 $(one "$c" "$1" "$2")" >> "$dir/runs"
		done
	done
done
report() {
echo "## Power-cut bench, $(uname -r), $(date -u +%F)"
echo
grep -qw erms /proc/cpuinfo && cpu="with ERMS" || cpu="without ERMS (UBLK_VM_CPU_MODEL=max,-erms)"
echo "Recording cost: fio io_uring O_DIRECT on a 256 MiB memory device (its first 128 MiB written once before timing), medians of $rounds rounds of ${rt} s (a recorded case stops at $cap_mib MiB); ratios to memory; CPU: the server's, all threads; guest CPU $cpu (make bench-copy), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) of memory."
echo
echo "| workload | memory IOPS | copy=buffer | recorded, log on /tmp | recorded, log on a huge tmpfs | CPU us/IO memory | buffer | recorded /tmp | recorded huge |"
echo "|---|---|---|---|---|---|---|---|---|"
for w in 4k:QD64 128k:QD16; do
	bs=${w%%:*}
	awk -v w="$bs ${w#*:}" -v m="$(col memory "$bs" 3)" -v b="$(col buffer "$bs" 3)" \
		-v r="$(col recorded "$bs" 3)" -v h="$(col huge "$bs" 3)" -v cm="$(col memory "$bs" 4)" \
		-v cb="$(col buffer "$bs" 4)" -v cr="$(col recorded "$bs" 4)" -v ch="$(col huge "$bs" 4)" 'BEGIN {
		printf "| %s write | %d | %d (%.2fx) | %d (**%.2fx**) | %d (**%.2fx**) | %s | %s | %s | %s |\n",
			w, m, b, b / m, r, r / m, h, h / m, cm, cb, cr, ch }'
done
}
report > "$dir/report.md"
cat "$dir/report.md"

# states per minute: the workload recorded on a file device over a copy
# of a fresh ext4 (the base every state starts from)
truncate -s 256M "$dir/base.img"
mkfs.ext4 -q -F "$dir/base.img"
cp "$dir/base.img" "$dir/work.img"
out=$("$bin" add -t file -f "$dir/work.img" -s 256MiB -r false --record "$log")
id=$(echo "$out" | sed -n 's/^dev id \([0-9]*\):.*/\1/p')
mkdir -p "$dir/mnt"
mount "/dev/ublkb$id" "$dir/mnt"
for i in 1 2 3 4 5 6 7 8; do
	head -c 65536 /dev/urandom > "$dir/mnt/f$i"
	sync "$dir/mnt/f$i" "$dir/mnt"
	"$bin" mark -n "$id" "f$i $(md5sum < "$dir/mnt/f$i" | cut -d' ' -f1)"
done
umount "$dir/mnt"
"$bin" del -n "$id" >/dev/null
states=${UBLK_BENCH_STATES:-16}
"$bin" crashtest "$log" --base "$dir/base.img" --check "sh $PWD/spec/guest/scripts/crash-check.sh {dev} {marks}" \
	--states "$states" --jobs 2 --json --dir "$dir" > "$dir/crashtest.json" || true
{
echo
tail -1 "$dir/crashtest.json" | luajit -e '
  local s = require("dkjson").decode(io.read("*a")).summary
  print(("States per minute: a 256 MiB ext4 on a recorded file device, 8 files written, fsynced and marked; crashtest --jobs 2 with e2fsck -fn and the marked files checked: %d states (%d entries, %d epochs) %s in %.1f s, **%.1f states/min**."):format(
    s.checked, s.entries, s.epochs, s.result == "pass" and "pass" or "FAIL at " .. tostring(s.failed), s.seconds, s.checked / s.seconds * 60))'
} > "$dir/states.md"
cat "$dir/states.md" >> "$dir/report.md"
cat "$dir/states.md"
name=bench/results/$(date -u +%F)-$(uname -r)-crash
n=1 base=$name
while [ -e "$name.md" ]; do n=$((n + 1)); name=$base-$n; done
cp "$dir/report.md" "$name.md"
echo
echo "$name.md"
umount "$dir/huge"
rm -rf "$dir"
