#!/usr/bin/env bash
# The virtual network between two VMs (issue 18), under `-icount shift=0,sleep=off`: virtual time
# counts instructions (1 ns each), so every figure is deterministic in kind and reads as
# instructions: the generated two-VM system with Debian's kernel in both VMs, booted once; at
# the shells:
#
# - latency: `ping -c 20` from vmm's guest to vmm2's through both virtio-net cards and net_virt,
#   against `ping -c 20 127.0.0.1` in vmm's guest (the floor: the same kernel's ICMP path
#   without a device);
# - throughput: NET_MIB MiB (8) of /dev/urandom bytes with busybox `nc`, vmm → vmm2 and
#   vmm2 → vmm, against the same file over loopback in vmm's guest (the floor: the same TCP
#   stack and `nc`, no device). The time is the sender's /proc/uptime around its `nc`, which
#   ends when the receiver has read everything and closed.
#
# Every instruction counts, whoever runs it (both guests, both VMMs, net_virt, the kernel): the
# machine has one core. vmm2 has no wake-up timer, so its idle guest spins through WFI exits
# while vmm's guest waits: that is in the figures too.
#
#   build/bench/net.sh OUT_DIR LOADER_IMG DISK_IMG   (the Makefile's bench-net)
set -euo pipefail
out=$1 loader=$2 disk=$3
mib=${NET_MIB:-8}
bytes=$((mib * 1048576))
mkdir -p "$out"
# Markers are typed as `x-$(echo y)` so that the echo of the typed line never matches them.
cat >"$out/net.txt" <<EOT
@vmm
vmm| linux-guest: userspace up
vmm| ping-lo:
vmm| ping-vm:
vmm| lo-t=
vmm| fwd-t=
vmm| listening-5001

@vmm2
vmm2| linux-guest: userspace up
vmm2| net-2-up
vmm2| rev-t=

# What each listener received (in sections of their own: a listener may print before or after
# the sender's time; with no prefix: it may come right after a prompt on the same line).
@lo
lo-bytes=$bytes
@fwd
fwd-bytes=$bytes
@rev
rev-bytes=$bytes

# The listeners' input is a pipe that never ends (busybox nc half-closes at the end of its
# input); each prints the bytes it received.
>after vmm2| linux\$ => \\x1c1ip addr add 10.0.0.2/24 dev eth0 && ip link set eth0 up && (sleep 99999 | nc -l -p 5000 | wc -c | sed 's/^/fwd-b''ytes=/' &) && head -c $bytes /dev/urandom >/tmp/f && echo net-\$((1+1))-up\\r
>after vmm2| net-2-up => \\x1c0\\r
>after vmm| linux\$ => ip link set lo up && ip addr add 10.0.0.1/24 dev eth0 && ip link set eth0 up && ping -c 3 -W 2 10.0.0.2 >/dev/null; head -c $bytes /dev/urandom >/tmp/f && echo ping-\$(echo lo): \$(ping -c 20 -i 0.05 127.0.0.1 | tail -2) && echo ping-\$(echo vm): \$(ping -c 20 -i 0.05 10.0.0.2 | tail -2)\\r
>after vmm| ping-vm: => (sleep 99999 | nc -l -p 5002 | wc -c | sed 's/^/lo-b''ytes=/' &); sleep 1; t0=\$(cut -d' ' -f1 /proc/uptime); nc 127.0.0.1 5002 </tmp/f; echo lo-\$(echo t)=\$t0,\$(cut -d' ' -f1 /proc/uptime)\\r
>after vmm| lo-t= => t0=\$(cut -d' ' -f1 /proc/uptime); nc 10.0.0.2 5000 </tmp/f; echo fwd-\$(echo t)=\$t0,\$(cut -d' ' -f1 /proc/uptime)\\r
>after vmm| fwd-t= => (sleep 99999 | nc -l -p 5001 | wc -c | sed 's/^/rev-b''ytes=/' &); sleep 1; echo listening-\$((5001))\\r
>after vmm| listening-5001 => \\x1c1t0=\$(cut -d' ' -f1 /proc/uptime); nc 10.0.0.1 5001 </tmp/f; echo rev-\$(echo t)=\$t0,\$(cut -d' ' -f1 /proc/uptime)\\r

!Kernel panic
!Oops
!BUG:
!VM stopped
!hypervisor fault
!PANIC
EOT
cp "$disk" "$out/disk.img"
cargo run -q -p qemu-expect --bin qemu-expect -- --expect "$out/net.txt" --log "$out/net.log" \
    --timeout "${NET_TIMEOUT:-1200}" --linger 1 -- \
    qemu-system-aarch64 -machine virt,virtualization=on -cpu cortex-a53 -m 2G -nographic -no-reboot \
    -icount shift=0,sleep=off -device loader,file="$loader",addr=0x70000000,cpu-num=0 \
    -drive if=none,format=raw,file="$out/disk.img",id=hd0 -device virtio-blk-device,drive=hd0 \
    -global virtio-mmio.force-legacy=false -serial stdio -monitor none >"$out/runner.txt" 2>&1 || {
    tail -n 3 "$out/runner.txt" >&2
    exit 1
}
# "ping-vm: 20 packets transmitted, 20 packets received, 0% packet loss round-trip min/avg/max = a/b/c ms"
ping_line() { grep -a "^vmm| ping-$1: [0-9]" "$out/net.log" | tail -n 1; }
avg_ms() { ping_line "$1" | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/[0-9.]* ms.*|\1|p'; }
loss() { ping_line "$1" | sed -n 's|.* \([0-9]*\)% packet loss.*|\1|p'; }
span() { grep -a -o "$1-t=[0-9.]*,[0-9.]*" "$out/net.log" | tail -n 1 | cut -d= -f2 | awk -F, '{ printf "%.2f", $2 - $1 }'; }
lo_ms=$(avg_ms lo) vm_ms=$(avg_ms vm)
lo_s=$(span lo) fwd_s=$(span fwd) rev_s=$(span rev)
for v in "$lo_ms" "$vm_ms" "$lo_s" "$fwd_s" "$rev_s"; do
    [ -n "$v" ] || {
        echo "bench-net: a figure is missing from $out/net.log" >&2
        exit 1
    }
done
for v in "$lo_s" "$fwd_s" "$rev_s"; do
    [ "$v" != 0.00 ] || {
        echo "bench-net: a transfer took less than /proc/uptime's 10 ms step: raise NET_MIB" >&2
        exit 1
    }
done
[ "$(loss vm)" = 0 ] || {
    echo "bench-net: ping between the VMs lost packets: $(ping_line vm)" >&2
    exit 1
}
# A TCP segment carries 1448 bytes (MTU 1500, timestamps on).
segs=$(((bytes + 1447) / 1448))
row() { # $1 = path, $2 = seconds
    awk -v p="$1" -v s="$2" -v b="$bytes" -v n="$segs" -v lo="$lo_s" -v mib="$mib" 'BEGIN {
        printf "| %s | %d MiB in %.2f s | %.2f | %.0f | %.2f |\n", p, mib, s, b / s / 1e6, s * 1e9 / n, s / lo }'
}
{
    echo "| path | guest time (1 instruction = 1 ns) | MB/s (virtual) | instructions per 1448-byte segment | ratio to loopback |"
    echo "|---|---|---|---|---|"
    row "loopback in vmm's guest (floor)" "$lo_s"
    row "vmm → vmm2 (net_virt)" "$fwd_s"
    row "vmm2 → vmm (net_virt)" "$rev_s"
    echo
    echo "| ping -c 20 | average round trip | instructions per round trip | ratio to loopback |"
    echo "|---|---|---|---|"
    awk -v a="$lo_ms" 'BEGIN { printf "| 127.0.0.1 in vmm'"'"'s guest (floor) | %.3f ms | %.0f | 1.00 |\n", a, a * 1e6 }'
    awk -v a="$vm_ms" -v lo="$lo_ms" 'BEGIN { printf "| vmm → vmm2 | %.3f ms | %.0f | %.2f |\n", a, a * 1e6, a / lo }'
} | tee "$out/net.md"
