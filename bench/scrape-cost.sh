#!/bin/sh
# bench/scrape-cost.sh: what a Prometheus scrape costs the data path
# (README, stats --prom --listen): fio 4k randread QD64 on a null device,
# rounds alternating: no scraper; one curl asking the exporter for "/" 10
# times a second (the scraper's own CPU, which a 2-vCPU guest shares with
# fio); the same for /metrics (that plus the exporter reading every
# queue's counters and writing the text).  One guest boot, one line.
#   flock /tmp/ublk-guest.lock env UBLK_VM_KERNEL=trixie spec/harness/vm/run sh bench/scrape-cost.sh
# RUNTIME (seconds, 5) per case, ROUNDS (3) pairs.
set -eu
cd "$(dirname "$0")/.."
bin=${UBLK_LUA_BIN:-build/ublk-lua}
rt=${RUNTIME:-5}
rounds=${ROUNDS:-3}
iops() {
	fio --name=r --filename="$1" --rw=randread --bs=4k --iodepth=64 --ioengine=io_uring \
		--direct=1 --time_based --runtime="$rt" --size=128M --output-format=terse \
		--terse-version=3 2>/dev/null | tail -1 | cut -d';' -f8
}
ip link set lo up 2>/dev/null || true # the guest boots with it down
out=$("$bin" add -t null -s 1GiB -q 2 -d 128)
id=$(echo "$out" | sed -n 's/^dev id \([0-9]*\):.*/\1/p')
"$bin" stats --prom --listen 127.0.0.1:19851 > /dev/null &
exporter=$!
sleep 1
n=$((rt * 10)) # as long as fio runs
# fio's IOPS while one curl asks for PATH 10 times a second; the answers
# that were 200 go to /tmp/ublk-scrapes
scraped() {
	curl -s --rate 10/s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:19851$1?[1-$n]" \
		> /tmp/ublk-scrapes &
	c=$!
	iops "/dev/ublkb$id"
	wait "$c" || true # curl writes its lines at its end
}
# the exporter's CPU time so far, in clock ticks
cpu() { awk '{ print $14 + $15 }' "/proc/$exporter/stat"; }
plain="" root="" metrics="" ok=0 ticks=0
i=0
while [ "$i" -lt "$rounds" ]; do
	plain="$plain $(iops "/dev/ublkb$id")"
	root="$root $(scraped /)"
	t0=$(cpu)
	metrics="$metrics $(scraped /metrics)"
	ticks=$((ticks + $(cpu) - t0))
	ok=$((ok + $(grep -c '^200$' /tmp/ublk-scrapes || true)))
	i=$((i + 1))
done
kill "$exporter"
wait "$exporter" || true
"$bin" del -n "$id" > /dev/null
rm -f /tmp/ublk-scrapes
echo "$plain | $root | $metrics" | awk -v k="$(uname -r)" -v ok="$ok" -v r="$rounds" \
	-v ms="$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$ok" 'BEGIN { printf "%.2f", n ? t * 1000 / hz / n : 0 }')" '{
	g = 0
	for (i = 1; i <= NF; i++) { if ($i == "|") { g++; continue } s[g] += $i; c[g]++ }
	p = s[0] / c[0]; a = s[1] / c[1]; m = s[2] / c[2]
	printf "scrape-cost %s: 4k randread QD64 on null, means of %d: %d IOPS alone, %d with 10 scrapes/s of / (%.3fx), %d of /metrics (%.3fx; %d answered 200, %s ms of exporter CPU each): /metrics against /: %.3fx\n",
		k, r, p, a, a / p, m, m / p, ok, ms, m / a }'
