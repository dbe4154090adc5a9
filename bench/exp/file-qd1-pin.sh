#!/bin/bash
# file backend on tmpfs, 4k randread QD1, fio on CPU 0: auto vs pinned vs kublk loop; IOPS and IPIs/IO
# Run in the guest: spec/harness/vm/run bench/exp/file-qd1-pin.sh (UBLK_VM_CPU_MODEL=max,-erms as make bench)
cd "$(dirname "$0")/../.."; modprobe ublk_drv 2>/dev/null; uname -r
ipis() { awk '/^ *(CAL|RES):/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s }' /proc/interrupts; }
devof() { echo "$1" | sed -n 's/^dev id \([0-9]*\):.*/\1/p'; }
for f in a p k; do dd if=/dev/urandom of=/tmp/f$f.img bs=1M count=256 status=none; done
o=$(build/ublk-lua add bench/device.lua file /tmp/fa.img autopin); A=$(devof "$o")
o=$(build/ublk-lua add bench/device.lua file /tmp/fp.img pinned); P=$(devof "$o")
build/peers/kublk add -t loop -q 2 -d 128 /tmp/fk.img >/dev/null 2>&1
K=$(ls /sys/block | grep ublkb | sed 's/ublkb//' | grep -vx $A | grep -vx $P | head -1)
echo "auto $A pinned $P kublk $K"
run() {
  a=$(ipis)
  n=$(fio --name=b --filename=/dev/ublkb$1 --ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=1 --cpus_allowed=0 --size=256M --time_based --runtime=3 --output-format=terse --terse-version=3 2>/dev/null | tail -1 | cut -d';' -f8)
  b=$(ipis)
  echo "$2 iops $n IPIs/IO $(awk -v a=$a -v b=$b -v n=$n 'BEGIN{printf "%.3f", (b-a)/(n*3)}')"
}
for r in 1 2 3; do run $A auto; run $P pinned; run $K kublk; done
build/ublk-lua del -a >/dev/null; build/peers/kublk del -n $K >/dev/null 2>&1
