#!/bin/sh
# bench/scrape-cost.sh: what a Prometheus scrape costs the data path
# (README, stats --prom --listen): fio 4k randread QD64 on a null device,
# rounds alternating without and with an exporter scraped 10 times a
# second, in one guest boot, one line.
#   flock /tmp/ublk-guest.lock env UBLK_VM_KERNEL=trixie spec/vm/run sh bench/scrape-cost.sh
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
out=$("$bin" add -t null -s 1GiB -q 2 -d 128)
id=$(echo "$out" | sed -n 's/^dev id \([0-9]*\):.*/\1/p')
"$bin" stats --prom --listen 127.0.0.1:19851 > /dev/null &
exporter=$!
sleep 1
plain="" scraped="" scrapes=0
i=0
while [ "$i" -lt "$rounds" ]; do
	plain="$plain $(iops "/dev/ublkb$id")"
	# the scraper: 10 scrapes a second for as long as fio runs
	(
		n=0
		end=$(($(date +%s) + rt + 1))
		while [ "$(date +%s)" -lt "$end" ]; do
			curl -sf -o /dev/null http://127.0.0.1:19851/metrics && n=$((n + 1))
			sleep 0.1
		done
		echo "$n" > /tmp/ublk-scrapes
	) &
	scraper=$!
	scraped="$scraped $(iops "/dev/ublkb$id")"
	wait "$scraper"
	scrapes=$((scrapes + $(cat /tmp/ublk-scrapes)))
	i=$((i + 1))
done
kill "$exporter"
wait "$exporter" || true
"$bin" del -n "$id" > /dev/null
rm -f /tmp/ublk-scrapes
echo "$plain" "|" "$scraped" | awk -v k="$(uname -r)" -v s="$scrapes" -v rt="$rt" '{
	n = 0; m = 0; p = 0; q = 0
	for (i = 1; i <= NF; i++) { if ($i == "|") { m = 1; continue }
		if (m) { q += $i; nq++ } else { p += $i; np++ } }
	printf "scrape-cost %s: 4k randread QD64 on null: %d IOPS without, %d with %d scrapes (%.1f a second): %.3fx\n",
		k, p / np, q / nq, s, s / (nq * (rt + 1)), (q / nq) / (p / np) }'
