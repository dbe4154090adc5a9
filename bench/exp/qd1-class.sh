#!/bin/bash
# 4k QD1 randread, fio on CPU 0: our null with its queue threads held at SCHED_BATCH and at SCHED_OTHER (chrt), and kublk null
# Run in the guest: spec/harness/vm/run bench/exp/qd1-class.sh (UBLK_VM_CPU_MODEL=max,-erms as make bench)
cd "$(dirname "$0")/../.."; bin=build/ublk-lua
modprobe ublk_drv 2>/dev/null
grep -w erms /proc/cpuinfo >/dev/null && echo ERMS || echo noERMS
o=$($bin add -t null -s 1GiB -q 2 -d 128)
id=$(echo "$o" | sed -n 's/^dev id \([0-9]*\):.*/\1/p'); pid=$(echo "$o" | sed -n 's/.* pid \([0-9]*\).*/\1/p')
tids=$(for t in /proc/$pid/task/*; do [ "$(awk '{print $41}' $t/stat)" = 3 ] && echo ${t##*/}; done)
echo "ours dev $id batch tids: $tids"
build/peers/kublk add -t null -q 2 -d 128 >/tmp/k.out 2>&1
kid=$(ls -d /sys/block/ublkb* | sed 's/.*ublkb//' | grep -vx "$id" | head -1)
echo "kublk dev $kid"
for d in $id $kid; do echo "ublkb$d: $(cat /sys/block/ublkb$d/queue/scheduler) nr_req $(cat /sys/block/ublkb$d/queue/nr_requests) rot $(cat /sys/block/ublkb$d/queue/rotational) rand $(cat /sys/block/ublkb$d/queue/add_random) stats $(cat /sys/block/ublkb$d/queue/iostats) nomerges $(cat /sys/block/ublkb$d/queue/nomerges) wbt $(cat /sys/block/ublkb$d/queue/wbt_lat_usec 2>/dev/null) rq_aff $(cat /sys/block/ublkb$d/queue/rq_affinity) maxsec $(cat /sys/block/ublkb$d/queue/max_sectors_kb)"; done
setp() { for t in $tids; do chrt $1 -p 0 $t; done; }
busy() { awk '/^cpu /{ print $2+$3+$4+$7+$8 }' /proc/stat; }
run() {
  b0=$(busy)
  fio --output-format=json --name=b --filename=/dev/ublkb$1 --ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=1 --numjobs=1 --cpus_allowed=0,1 --cpus_allowed_policy=split --size=1G --time_based --runtime=3 --ramp_time=1 >/tmp/f.json 2>/dev/null
  b1=$(busy)
  python3 -c "
import json,sys; j=json.load(open('/tmp/f.json'))['jobs'][0]; r=j['read']; ios=r['total_ios']
print('%-8s iops %6.0f clat p50 %5.0f us mean %5.0f us  slat mean %5.0f  sys %.1f%% usr %.1f%% ctx %d  guest busy/IO %.0f us' % ('$2', r['iops'], r['clat_ns']['percentile']['50.000000']/1000, r['clat_ns']['mean']/1000, r['slat_ns']['mean']/1000, j['sys_cpu'], j['usr_cpu'], j['ctx'], ($b1-$b0)*10000.0/ (r['iops']*4) ))"
}
for r in 1 2 3; do
  setp -b; run $id batch
  setp -o; run $id other
  run $kid kublk
done
$bin del -n $id; build/peers/kublk del -n $kid >/dev/null 2>&1
