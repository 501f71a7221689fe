#!/usr/bin/env bash
# Idle cost of the Linux guest: the same kernel, initramfs and shell session booted twice under
# the VMM and twice natively in QEMU, once with `sleep 0` and once with `sleep $IDLE_S` at the
# prompt, then `poweroff -f`. QEMU's host CPU time while the guest sleeps is sampled from
# /proc/<pid>/stat (utime + stime) when the shell echoes the sleep command and when it prints
# `idle-done`; under the VMM, the exits of the idle period are the difference between the two
# runs' statistics (printed at power-off). The native boots get the guest's own device tree and
# its RAM size, as in linux-boot.sh.
#
#   build/bench/linux-idle.sh OUT_DIR LOADER_IMG LINUX_DIR GUEST_DTB   (make bench-linux-idle)
set -euo pipefail
out=$1 loader=$2 linux=$3 dtb=$4
ram_mib=$(build/bench/dtb-ram-mib.sh "$dtb")
idle=${IDLE_S:-30}
mkdir -p "$out"
expect_file() { # $1 = seconds
    cat <<EOT
@vm
linux-guest: userspace up
>after linux\$ => sleep $1; echo idle-done=$1\r
idle-done=$1
>after linux\$ => poweroff -f\r
!Kernel panic
!VM stopped
EOT
}
run() { # $1 = vmm|native, $2 = seconds
    local tag=$1-$2 disk=$out/disk-$1-$2.img
    cp "$linux/disk.img" "$disk"
    expect_file "$2" >"$out/$tag.txt"
    local machine=(-machine virt,virtualization=on -cpu cortex-a53 -m 2G
        -device loader,file=$loader,addr=0x70000000,cpu-num=0)
    if [ "$1" = native ]; then
        machine=(-machine virt -cpu cortex-a53 -m "${ram_mib}M" -dtb "$dtb" -kernel "$linux/Image"
            -initrd "$linux/initramfs-shell.cpio.gz" -append "console=ttyAMA0 rdinit=/init nokaslr")
    fi
    cargo run -q -p qemu-expect --bin qemu-expect -- --expect "$out/$tag.txt" --log "$out/$tag.log" \
        --timeout 300 --linger 1 --expect-exit -- \
        qemu-system-aarch64 "${machine[@]}" -nographic -no-reboot -name "idle-$tag" \
        -drive if=none,format=raw,file="$disk",id=hd0 -device virtio-blk-device,drive=hd0 \
        -global virtio-mmio.force-legacy=false -serial stdio -monitor none >/dev/null &
    local runner=$! pid="" t0="" t1="" now="" last=""
    # QEMU's CPU seconds when the sleep starts (its command echoed) and ends (the last sample
    # before `idle-done`, at most 0.2 s early, if QEMU had already powered off).
    while kill -0 "$runner" 2>/dev/null; do
        [ -n "$pid" ] || pid=$(pgrep -f -- "^qemu-system-aarch64 .*-name idle-$tag " | head -n1 || true)
        now=""
        [ -z "$pid" ] || now=$(ticks "$pid" 2>/dev/null || true)
        if [ -n "$now" ] && [ -z "$t0" ] && grep -q "sleep $2; echo idle-done" "$out/$tag.log" 2>/dev/null; then
            t0=$now
        fi
        if [ -n "$t0" ] && [ -z "$t1" ] && grep -qx "idle-done=$2" "$out/$tag.log" 2>/dev/null; then
            t1=${now:-$last}
        fi
        [ -z "$now" ] || last=$now
        sleep 0.2
    done
    wait "$runner"
    # QEMU may have powered off between two samples: the last one is the end of the sleep.
    if [ -n "$t0" ] && [ -z "$t1" ] && grep -qx "idle-done=$2" "$out/$tag.log"; then
        t1=$last
    fi
    [ "$2" != 0 ] || return 0 # the short run is only for the exit counts
    if [ -z "$t0" ] || [ -z "$t1" ]; then
        echo "linux-idle: $tag: QEMU's CPU time not sampled (pid '$pid')" >&2
        exit 1
    fi
    awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f\n", (b - a) / hz }' >"$out/$tag.cpu"
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
cpu() { cat "$out/$1.cpu"; }
exits() { awk '/^  total exits=/ { sub("exits=", "", $2); print $2 }' "$out/$1.log"; }
wfi() { awk '/^  wfi exits=/ { sub("exits=", "", $2); print $2 }' "$out/$1.log"; }
idle() { sed -n "s/^vmm: idle: parks=\([0-9]*\) timer-arms=[0-9]* timer-wakes=\([0-9]*\)/\1 \2/p" "$out/$1.log"; }
for m in vmm native; do
    for s in 0 "$idle"; do
        echo "bench-linux-idle: $m, sleep $s"
        run "$m" "$s"
    done
done
{
    echo "| run | QEMU host CPU during \`sleep $idle\` | share of a core | VMM exits, sleep $idle minus sleep 0 | per second | WFI exits | parks | timer wake-ups |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for m in vmm native; do
        c=$(cpu "$m-$idle")
        share=$(awk -v c="$c" -v s="$idle" 'BEGIN { printf "%.1f%%", 100 * c / s }')
        if [ "$m" = vmm ]; then
            e0=$(exits vmm-0) e1=$(exits "vmm-$idle")
            w=$(($(wfi "vmm-$idle") - $(wfi vmm-0)))
            eps=$(awk -v a="$e0" -v b="$e1" -v s="$idle" 'BEGIN { printf "%.1f", (b - a) / s }')
            read -r p0 t0 <<<"$(idle vmm-0)"
            read -r p1 t1 <<<"$(idle "vmm-$idle")"
            echo "| under the VMM | ${c} s | $share | $((e1 - e0)) | $eps | $w | $((p1 - p0)) | $((t1 - t0)) |"
        else
            echo "| native QEMU | ${c} s | $share | - | - | - | - | - |"
        fi
    done
} | tee "$out/linux-idle.md"
