#!/usr/bin/env bash
# Linux boot time side by side: the same kernel, initramfs and bootargs booted natively in QEMU
# and under the VMM, both under `-icount shift=0,sleep=off` (virtual time counts instructions,
# so the figures are deterministic), to the shell prompt, then `poweroff -f`. Reports the
# guest's own clock: the printk time of `Run /init` and the uptime /init prints as it starts the
# shell, and the ratio VMM / native; and the VMM's exits by class. `Run /init` is read back with
# dmesg at the prompt too, so bootargs with `quiet` (no boot messages on the console) work.
#
# Block throughput: at the prompt the guest reads DD_MB MiB (64) from /dev/vda, cold (caches
# dropped first), with `dd bs=1M`; the rate is the guest's clock between the printk times of two
# /dev/kmsg markers around dd (busybox's dd prints no rate). The disk copy is grown to DD_MB +
# 16 MiB for it. Under `sleep=off` that rate is meaningless natively: an idle vCPU's clock jumps
# to its next timer deadline at once, while the host still reads the file, so every I/O wait
# costs a timer period (4.2 MB/s seen). So both sides boot a second time under `-icount shift=0`
# (sleep on: an idle vCPU's virtual clock follows the host's while it waits), and the rate is
# taken from those boots (DD_RUNS pairs, 3, and their medians; BENCH_IO_ICOUNT= boots them with
# no -icount at all, in host time). It depends on the host: run it on a quiet machine.
#
# SMP=N (1): the native boots get `-smp N` (the VMM's image must carry an N-CPU device tree:
# `make bench-smp`). DD_RUNS=0 skips the throughput boots.
#
# Both sides boot the same machine: the native boots get the device tree the VMM gives its guest
# (GUEST_DTB: the same devices at the same addresses, so the kernel probes the same drivers) and
# that tree's RAM size (`-m`), not QEMU's generated tree. Until 2026-12-05 the native boots had
# QEMU's own tree and 2 GiB against the guest's 256 MiB: the native kernel then set up 8 times
# the memory (struct pages, hash tables, the W+X walk) and probed PCI, GPIO and RTC besides,
# some 64 ms of extra native work that made the ratio look better than it is.
#
#   build/bench/linux-boot.sh OUT_DIR LOADER_IMG LINUX_DIR BOOTARGS GUEST_DTB
set -euo pipefail
out=$1 loader=$2 linux=$3 bootargs=$4 dtb=$5
mkdir -p "$out"
ram_mib=$(build/bench/dtb-ram-mib.sh "$dtb")
dd_mb=${DD_MB:-64}
smp=${SMP:-1}
cat >"$out/boot.txt" <<'EOT'
@vm
linux-guest: starting a shell
>after linux$ => dmesg | grep -m1 'Run /init'\r
] Run /init as init process
>after linux$ => echo 3 > /proc/sys/vm/drop_caches; echo bench-dd-start > /dev/kmsg; dd if=/dev/vda of=/dev/null bs=1M count=DD_MB; echo bench-dd-end > /dev/kmsg; dmesg | grep bench-dd\r
] bench-dd-end
>after linux$ => poweroff -f\r
!Kernel panic
!VM stopped
EOT
sed -i "s/DD_MB/$dd_mb/" "$out/boot.txt"
run() { # $1 = vmm|native, $2 = -icount's options, $3 = log name
    local disk=$out/disk-$3.img
    cp "$linux/disk.img" "$disk"
    truncate -s $((dd_mb + 16))M "$disk"
    local machine=(-machine virt,virtualization=on -cpu cortex-a53 -m 2G
        -device loader,file=$loader,addr=0x70000000,cpu-num=0)
    if [ "$1" = native ]; then
        machine=(-machine virt -cpu cortex-a53 -smp "$smp" -m "${ram_mib}M" -dtb "$dtb"
            -kernel "$linux/Image" -initrd "$linux/initramfs-shell.cpio.gz" -append "$bootargs")
    fi
    echo "bench-linux: booting $1 under -icount $2"
    cargo run -q -p qemu-expect --bin qemu-expect -- --expect "$out/boot.txt" --log "$out/$3.log" \
        --timeout 600 --linger 1 --expect-exit -- \
        qemu-system-aarch64 "${machine[@]}" -nographic -no-reboot ${2:+-icount "$2"} \
        -drive if=none,format=raw,file="$disk",id=hd0 -device virtio-blk-device,drive=hd0 \
        -global virtio-mmio.force-legacy=false -serial stdio -monitor none >/dev/null
}
run_init() { sed -n 's/^\[ *\([0-9.]*\)\] Run \/init as init process.*/\1/p' "$out/$1.log" | head -n1; }
shell_at() { sed -n 's/^linux-guest: starting a shell on .* at uptime \([0-9.]*\).*/\1/p' "$out/$1.log" | head -n1; }
run native shift=0,sleep=off native
run vmm shift=0,sleep=off vmm
io_icount=${BENCH_IO_ICOUNT-shift=0}
dd_runs=${DD_RUNS:-3}
for i in $(seq 1 "$dd_runs"); do
    run native "$io_icount" native-io-$i
    run vmm "$io_icount" vmm-io-$i
done
# MB/s = 10^6 B/s, between the printk times of the two markers.
dd_rate() { sed -n 's/^\[ *\([0-9.]*\)\] bench-dd-\(start\|end\).*/\1/p' "$out/$1.log" |
    head -n2 | awk -v b=$((dd_mb << 20)) 'NR == 1 { s = $1 } NR == 2 { printf "%.1f", b / ($1 - s) / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b / a }'; }
{
    echo "| guest clock (s, -icount shift=0,sleep=off) | native QEMU | under the VMM | ratio |"
    echo "| --- | ---: | ---: | ---: |"
    n=$(run_init native) v=$(run_init vmm)
    echo "| printk time of \`Run /init\` | $n | $v | $(ratio "$n" "$v") |"
    n=$(shell_at native) v=$(shell_at vmm)
    echo "| uptime when /init starts the shell | $n | $v | $(ratio "$n" "$v") |"
    if [ "$dd_runs" -gt 0 ]; then
    echo
    echo "| \`dd if=/dev/vda of=/dev/null bs=1M count=$dd_mb\`, cold, MB/s (guest clock, \`-icount ${io_icount:-off}\`) | native QEMU | under the VMM | VMM / native |"
    echo "| --- | ---: | ---: | ---: |"
    rates=""
    for i in $(seq 1 "$dd_runs"); do
        n=$(dd_rate native-io-$i) v=$(dd_rate vmm-io-$i)
        echo "| run $i | $n | $v | $(ratio "$n" "$v") |"
        rates="$rates$n $v"$'\n'
    done
    median() { printf '%s' "$rates" | awk -v k="$1" 'NF { print $k }' | sort -n |
        awk '{ x[NR] = $1 } END { print x[int((NR + 1) / 2)] }'; }
    n=$(median 1) v=$(median 2)
    echo "| **median** | $n | $v | $(ratio "$n" "$v") |"
    fi
    echo
    echo "VMM exits of the whole run (boot, prompt, power-off):"
    echo
    echo '```'
    sed -n '/^vmm: trap statistics/,/^vmm: passing PSCI/p' "$out/vmm.log"
    echo '```'
    echo
    if [ "$dd_runs" -gt 0 ]; then
    echo "The VMM's block counters in the dd boot:"
    echo
    echo '```'
    grep -E '^vmm: (virtio-blk|device calls)' "$out/vmm-io-1.log"
    echo '```'
    fi
} | tee "$out/linux-boot.md"
