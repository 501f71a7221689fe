#!/usr/bin/env bash
# Linux boot time side by side: the same kernel, initramfs and bootargs booted natively in QEMU
# and under the VMM, both under `-icount shift=0,sleep=off` (virtual time counts instructions,
# so the figures are deterministic), to the shell prompt, then `poweroff -f`. Reports the
# guest's own clock: the printk time of `Run /init` and the uptime /init prints as it starts the
# shell, and the ratio VMM / native; and the VMM's exits by class.
#
#   build/bench/linux-boot.sh OUT_DIR LOADER_IMG LINUX_DIR BOOTARGS
set -euo pipefail
out=$1 loader=$2 linux=$3 bootargs=$4
mkdir -p "$out"
cat >"$out/boot.txt" <<'EOT'
@vm
Run /init as init process
linux-guest: starting a shell
>after linux$ => poweroff -f\r
!Kernel panic
!VM stopped
EOT
run() { # $1 = vmm|native
    local disk=$out/disk-$1.img
    cp "$linux/disk.img" "$disk"
    local machine=(-machine virt,virtualization=on -cpu cortex-a53 -m 2G
        -device loader,file=$loader,addr=0x70000000,cpu-num=0)
    if [ "$1" = native ]; then
        machine=(-machine virt -cpu cortex-a53 -m 2G -kernel "$linux/Image"
            -initrd "$linux/initramfs-shell.cpio.gz" -append "$bootargs")
    fi
    echo "bench-linux: booting $1 under -icount"
    cargo run -q -p qemu-expect --bin qemu-expect -- --expect "$out/boot.txt" --log "$out/$1.log" \
        --timeout 600 --linger 1 --expect-exit -- \
        qemu-system-aarch64 "${machine[@]}" -nographic -no-reboot -icount shift=0,sleep=off \
        -drive if=none,format=raw,file="$disk",id=hd0 -device virtio-blk-device,drive=hd0 \
        -global virtio-mmio.force-legacy=false -serial stdio -monitor none >/dev/null
}
run_init() { sed -n 's/^\[ *\([0-9.]*\)\] Run \/init as init process.*/\1/p' "$out/$1.log" | head -n1; }
shell_at() { sed -n 's/^linux-guest: starting a shell on .* at uptime \([0-9.]*\).*/\1/p' "$out/$1.log" | head -n1; }
run native
run vmm
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b / a }'; }
{
    echo "| guest clock (s, -icount shift=0,sleep=off) | native QEMU | under the VMM | ratio |"
    echo "| --- | ---: | ---: | ---: |"
    n=$(run_init native) v=$(run_init vmm)
    echo "| printk time of \`Run /init\` | $n | $v | $(ratio "$n" "$v") |"
    n=$(shell_at native) v=$(shell_at vmm)
    echo "| uptime when /init starts the shell | $n | $v | $(ratio "$n" "$v") |"
    echo
    echo "VMM exits of the whole run (boot, prompt, power-off):"
    echo
    echo '```'
    sed -n '/^vmm: trap statistics/,/^vmm: passing PSCI/p' "$out/vmm.log"
    echo '```'
} | tee "$out/linux-boot.md"
