#!/usr/bin/env bash
# Prints the RAM size, in MiB, of a guest device tree's memory node(s): the `-m` a native QEMU
# boot of that tree needs so that both sides of a benchmark run the same machine.
#
#   build/bench/dtb-ram-mib.sh GUEST_DTB
set -euo pipefail
dtb=$1
nodes=$(fdtget -l "$dtb" / | grep '^memory' || true)
[ -n "$nodes" ] || { echo "dtb-ram-mib: no memory node in $dtb" >&2; exit 1; }
for c in '#address-cells' '#size-cells'; do
    [ "$(fdtget -t u "$dtb" / "$c")" = 2 ] || { echo "dtb-ram-mib: / $c is not 2" >&2; exit 1; }
done
total=0
for n in $nodes; do
    # reg = <addr-hi addr-lo size-hi size-lo> pairs (#address-cells = #size-cells = 2).
    read -r -a cells <<<"$(fdtget -t u "$dtb" "/$n" reg)"
    [ $(( ${#cells[@]} % 4 )) -eq 0 ] || { echo "dtb-ram-mib: /$n reg is not 2+2 cells" >&2; exit 1; }
    for ((i = 0; i < ${#cells[@]}; i += 4)); do
        total=$(( total + (cells[i + 2] << 32) + cells[i + 3] ))
    done
done
[ $(( total % (1 << 20) )) -eq 0 ] || { echo "dtb-ram-mib: $total bytes is not whole MiB" >&2; exit 1; }
echo $(( total >> 20 ))
