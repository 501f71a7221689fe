#!/usr/bin/env bash
# Restart time of the block driver domain, from a test-qemu-restart console log: for each
# fault the monitor logged (t= its CNTPCT when the fault arrived), the first response the VMM
# took after re-synchronising with the restarted driver (t= its CNTPCT then). Timer ticks at
# 62.5 MHz; under -icount shift=0 one instruction is 1 ns, so a tick is 16 instructions.
set -euo pipefail
log=${1:?usage: restart-time.sh <qemu.log>}
awk '
/driver_monitor: blk_driver faulted:/ { if (match($0, /\(t=[0-9]+\)/)) { fault = substr($0, RSTART + 3, RLENGTH - 4); n++ } }
/vmm: blk_driver serves again:/ && fault != "" {
    if (match($0, /\(t=[0-9]+\)/)) {
        served = substr($0, RSTART + 3, RLENGTH - 4)
        d = served - fault
        printf "restart %d: %d ticks from the fault to the first response served again = %d instructions\n", n, d, d * 16
        sum += d; k++; fault = ""
    }
}
END {
    if (k == 0) { print "restart-time: no restart with a response served again in " FILENAME > "/dev/stderr"; exit 1 }
    printf "restart-time: %d restarts, mean %d ticks = %d instructions\n", k, sum / k, sum / k * 16
}' "$log"
