#!/bin/bash
# old (SCHED_BATCH always) vs new (class by pace) vs kublk, null backend, fio as make bench runs it
# Run in the guest: spec/harness/vm/run bench/exp/class-ab.sh, with UBLK_OLD=
# the ublk-lua of an earlier commit, built in the work tree (git worktree add build/old REV && make -C build/old).
cd "$(dirname "$0")/../.."
modprobe ublk_drv 2>/dev/null
grep -w erms /proc/cpuinfo >/dev/null && echo ERMS || echo noERMS; uname -r
devof() { echo "$1" | sed -n 's/^dev id \([0-9]*\):.*/\1/p'; }
pidof_() { echo "$1" | sed -n 's/.* pid \([0-9]*\).*/\1/p'; }
B=${UBLK_AB_BACKEND:-null}; OLD=${UBLK_OLD:?UBLK_OLD: an older ublk-lua to compare with}
o=$($OLD add -t $B -s 1GiB -q 2 -d 128); old=$(devof "$o"); oldpid=$(pidof_ "$o")
o=$(build/ublk-lua add -t $B -s 1GiB -q 2 -d 128); new=$(devof "$o"); newpid=$(pidof_ "$o")
build/peers/kublk add -t null -q 2 -d 128 >/tmp/k.out 2>&1
kid=$(ls -d /sys/block/ublkb* | sed 's/.*ublkb//' | grep -vx "$old" | grep -vx "$new" | head -1)
echo "old $old new $new kublk $kid ($B)"
busy() { awk '/^cpu /{ print $2+$3+$4+$7+$8 }' /proc/stat; }
classes() { for t in /proc/$1/task/*; do c=$(awk '{print $41}' $t/stat); printf "%s " $c; done; }
run() { # dev label rw bs qd jobs
  b0=$(busy)
  fio --output-format=json --name=b --filename=/dev/ublkb$1 --ioengine=io_uring --direct=1 --rw=$3 --bs=$4 --iodepth=$5 --numjobs=$6 --cpus_allowed=0,1 --cpus_allowed_policy=split --size=1G --time_based --runtime=3 --ramp_time=1 --group_reporting >/tmp/f.json 2>/dev/null
  b1=$(busy)
  python3 -c "
import json; j=json.load(open('/tmp/f.json'))['jobs'][0]; r=j['read'] if '$3'.endswith('read') else j['write']
print('%-6s %-10s %-5s qd%-3s %sj iops %7.0f clat p50 %5.0f us  guest busy/IO %.0f us' % ('$2','$3','$4','$5','$6', r['iops'], r['clat_ns']['percentile']['50.000000']/1000, ($b1-$b0)*10000.0/(r['iops']*4)))"
}
for r in 1 2 3; do
  for w in "randread 4k 1 1" "randread 4k 64 1" "randread 4k 64 2" "randwrite 4k 64 2" "read 128k 16 1"; do
    set -- $w
    run $old old $1 $2 $3 $4
    run $new new $1 $2 $3 $4; echo "   new classes: $(classes $newpid)"
    run $kid kublk $1 $2 $3 $4
  done
done
build/ublk-lua del -n $new; $OLD del -n $old; build/peers/kublk del -n $kid >/dev/null 2>&1
