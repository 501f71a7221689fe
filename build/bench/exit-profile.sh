#!/bin/bash
# Where one exit's instructions go: QEMU's own execution trace, by function.
#
#   build/bench/exit-profile.sh BENCH [VMM_FEATURES]
#
# Builds the bench guest twice with only BENCH (a name from guests/testguest/src/bench.rs, e.g.
# mmio-read, or blk-read-64k: then an iteration is one request, and every PD's code counts) at
# N1 and N2 iterations, boots each under -icount shift=0,sleep=off with QEMU's
# `-d exec,nochain,in_asm` restricted (-dfilter) to the PDs' code (0x200000..) and the kernel
# (0x8060000000..), and prints for every function the instructions it ran per exit:
# (count at N2 - count at N1) / (N2 - N1). Everything done once (boot, loading, the result
# lines) cancels out in the difference. The guest's own instructions are not traced (its loop is
# a few instructions per exit). Functions of the VMM are symbolized against vmm.elf with
# llvm-symbolizer, inlined frames included (the innermost frame of the VMM's own crates names
# the stage); the kernel's against the SDK's sel4.elf.
#
# Environment: MICROKIT_CONFIG (debug), MICROKIT_SDK, N1 (200), N2 (400), PROFILE_DIR
# (build/out/profile). Needs llvm-symbolizer.
set -euo pipefail

bench=${1:?usage: exit-profile.sh BENCH [VMM_FEATURES]}
features=${2:-}
config=${MICROKIT_CONFIG:-debug}
n1=${N1:-200}
n2=${N2:-400}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
dir=${PROFILE_DIR:-build/out/profile}/$bench-$config${features:+-$features}
mkdir -p "$dir"
command -v llvm-symbolizer > /dev/null || { echo "exit-profile.sh: llvm-symbolizer is missing" >&2; exit 1; }

for n in "$n1" "$n2"; do
    # PROFILE_REUSE=1: only the analysis, over the counts of an earlier run.
    if [ -n "${PROFILE_REUSE:-}" ] && [ -s "$dir/counts-$n.tsv" ]; then continue; fi
    TESTGUEST_BENCH_ONLY=$bench TESTGUEST_BENCH_ITERATIONS=$n \
        CARGO_TARGET_DIR=target/guest-profile guests/testguest/build-image.sh --bench "$dir/guest-$n" > /dev/null
    make --no-print-directory image BUILD_DIR="$dir/sys-$n" MICROKIT_CONFIG="$config" \
        GUEST_IMAGE="$root/$dir/guest-$n/testguest-bench.Image" VMM_FEATURES="$features" > "$dir/build-$n.log"
    img=$dir/sys-$n/qemu_virt_aarch64/$config/loader.img
    echo "exit-profile: tracing $bench x $n ($config${features:+, $features})" >&2
    rm -f "$dir/trace-$n.fifo" "$dir/disk-$n.img" && mkfifo "$dir/trace-$n.fifo"
    truncate -s "${PROFILE_DISK_SIZE:-64M}" "$dir/disk-$n.img" # for the blk-* benchmarks
    printf 'bench %s iterations=%s \ntestguest: bench done\n!PANIC\n!seL4(CPU\n' "$bench" "$n" > "$dir/expect.txt"
    cargo run -q -p qemu-expect --bin qemu-expect -- --expect "$dir/expect.txt" \
        --log "$dir/console-$n.log" --timeout 600 --linger 1 -- \
        qemu-system-aarch64 -machine virt,virtualization=on -cpu cortex-a53 -m 2G -nographic \
        -device loader,file="$img",addr=0x70000000,cpu-num=0 \
        -icount shift=0,sleep=off -serial stdio -monitor none \
        -drive if=none,format=raw,file="$dir/disk-$n.img",id=hd0 -device virtio-blk-device,drive=hd0 \
        -global virtio-mmio.force-legacy=false \
        -d exec,nochain,in_asm -dfilter 0x200000..0x3fffff,0x8060000000..0x80ffffffff \
        -D "$dir/trace-$n.fifo" > /dev/null &
    qemu=$!
    # The trace (gigabytes: the boot's initialiser and kernel too) is counted as it streams.
    python3 "$root/build/bench/trace-count.py" < "$dir/trace-$n.fifo" > "$dir/counts-$n.tsv"
    wait $qemu
done

python3 - "$dir" "$n1" "$n2" "$dir/sys-$n1/qemu_virt_aarch64/$config/elf/vmm.elf" \
    "${MICROKIT_SDK:-$root/build/microkit-sdk-2.3.0}/board/qemu_virt_aarch64/$config/elf/sel4.elf" <<'EOF'
import collections, re, subprocess, sys
d, n1, n2, vmm, kernel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]

def counts(path):
    """Instructions run per TB start address (trace-count.py's table)."""
    c = {}
    with open(path) as f:
        for line in f:
            pc, insns = line.split()
            c[int(pc, 16)] = int(insns)
    return c

c1 = counts(f"{d}/counts-{n1}.tsv")
c2 = counts(f"{d}/counts-{n2}.tsv")
per = {pc: (c2.get(pc, 0) - c1.get(pc, 0)) / (n2 - n1) for pc in set(c1) | set(c2)}
per = {pc: v for pc, v in per.items() if abs(v) > 0.01}

def symbolize(elf, pcs):
    out = {}
    if not pcs:
        return out
    q = "\n".join(hex(p) for p in pcs) + "\n"
    res = subprocess.run(["llvm-symbolizer", "--inlining", "--functions=short", "--demangle",
                          "-e", elf], input=q, capture_output=True, text=True).stdout
    blocks = res.strip("\n").split("\n\n")
    for pc, block in zip(pcs, blocks):
        lines = block.split("\n")
        frames = [(lines[i], lines[i + 1] if i + 1 < len(lines) else "") for i in range(0, len(lines), 2)]
        out[pc] = frames
    return out

user = sorted(p for p in per if p < 0x8000000000)
kern = sorted(p for p in per if p >= 0x8000000000)
us = symbolize(vmm, user)
ks = symbolize(kernel, kern)

def stage(frames):
    # The outermost frame that lives in a crate of this project names the stage: the innermost
    # one of ours gives the detail.
    ours = [f for f, loc in frames if "/work/" in loc or "vmm" in f or "microkit" in f]
    return (ours[-1] if ours else frames[-1][0]) if frames else "?"

by_fn = collections.Counter()
by_inner = collections.Counter()
for p in user:
    fr = us.get(p, [("?", "")])
    by_fn["vmm: " + fr[-1][0]] += per[p]
    by_inner["vmm: " + fr[0][0]] += per[p]
for p in kern:
    fr = ks.get(p, [("?", "")])
    by_fn["kernel: " + fr[-1][0]] += per[p]
total_user = sum(per[p] for p in user)
total_kern = sum(per[p] for p in kern)
print(f"instructions per exit: PD code {total_user:.0f}, kernel {total_kern:.0f}, total {total_user + total_kern:.0f} (the guest's loop not counted)")
print("\nby function (outermost frame: the non-inlined function the code was compiled into)")
for name, v in by_fn.most_common():
    if abs(v) >= 1:
        print(f"{v:8.1f}  {name}")
print("\nPD code by innermost frame (inlined functions named)")
for name, v in by_inner.most_common(60):
    if abs(v) >= 1:
        print(f"{v:8.1f}  {name}")
EOF
