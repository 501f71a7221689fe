#!/usr/bin/env bash
# Restart time of the block driver domain, from a test-qemu-restart console log: for each
# fault the monitor logged (t= its CNTPCT when the fault arrived), the first response the
# block virtualiser (blk_driver's client) took after re-synchronising with the restarted
# driver (t= its CNTPCT then). Timer ticks at
# 62.5 MHz (16 ns). With --icount (a run under -icount shift=0, where one instruction is 1 ns
# of virtual time) a tick is 16 instructions, and the figures are printed as instructions too.
#
#   build/bench/restart-time.sh [--icount] <qemu.log>
set -euo pipefail
icount=0
if [ "${1:-}" = --icount ]; then icount=1; shift; fi
log=${1:?usage: restart-time.sh [--icount] <qemu.log>}
awk -v icount=$icount '
function show(d) { return icount ? sprintf("%d ticks = %d instructions", d, d * 16) : sprintf("%d ticks = %.1f us", d, d / 62.5) }
/driver_monitor: blk_driver faulted:/ { if (match($0, /\(t=[0-9]+\)/)) { fault = substr($0, RSTART + 3, RLENGTH - 4); n++ } }
/blk_virt: blk_driver serves again:/ && fault != "" {
    if (match($0, /\(t=[0-9]+\)/)) {
        served = substr($0, RSTART + 3, RLENGTH - 4)
        d = served - fault
        printf "restart %d: %s from the fault to the first response served again\n", n, show(d)
        sum += d; k++; fault = ""
    }
}
END {
    if (k == 0) { print "restart-time: no restart with a response served again in " FILENAME > "/dev/stderr"; exit 1 }
    printf "restart-time: %d restarts, mean %s\n", k, show(int(sum / k))
}' "$log"
