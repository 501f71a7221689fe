#!/bin/sh
# Makes an SMP guest's device tree from a uniprocessor one: adds cpu@1 .. cpu@(N-1) beside
# cpu@0 (PSCI enable-method, reg = the MPIDR Aff0 the VMM gives each vCPU), in order, so Linux
# numbers them as the VMM does. Usage: smp-dtb.sh N IN.dtb OUT.dtb (N = 1..4: system.xml's VM
# has four vCPUs).
set -eu
n=$1 in=$2 out=$3
case $n in 1|2|3|4) ;; *) echo "smp-dtb.sh: N must be 1..4, not '$n'" >&2; exit 1 ;; esac
cp "$in" "$out.tmp"
# fdtput -c puts a new node first among its siblings: create the last one first.
i=$((n - 1))
while [ "$i" -ge 1 ]; do
    node=/cpus/cpu@$i
    fdtput -c "$out.tmp" "$node"
    fdtput -t s "$out.tmp" "$node" device_type cpu
    fdtput -t s "$out.tmp" "$node" compatible arm,cortex-a53
    fdtput -t x "$out.tmp" "$node" reg "$i"
    fdtput -t s "$out.tmp" "$node" enable-method psci
    i=$((i - 1))
done
mv "$out.tmp" "$out"
