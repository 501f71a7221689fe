#!/bin/sh
# Fetches a real Linux guest from Debian's packages and builds a tiny initramfs for it.
#
#   guests/linux/fetch-debian-guest.sh [OUT_DIR]
#
# OUT_DIR defaults to build/out/linux (git-ignored). Environment:
#   FLAVOUR   Debian kernel flavour: arm64 (default) or cloud-arm64
#   KVER      kernel ABI name, e.g. 6.1.0-56; default: what linux-image-$FLAVOUR depends on
#   INIT_EXTRA  shell commands /init runs after its report, before `poweroff -f` (e.g. 'sleep 3')
#   VIRTIO=1  also put virtio_mmio.ko, virtio_blk.ko and virtio_console.ko (and whatever their
#             modinfo `depends=` names) into the initramfs; /init insmods them, shows
#             /proc/partitions and the first 4 KiB of /dev/vda, writes "linux-guest-was-here" at
#             512-byte sector 100 of /dev/vda, reads it back past the page cache, prints
#             "linux-guest: virtio-blk ok" only if it matches, reads the whole disk once (timed)
#             and, if /dev/hvc0 appears, writes a line to it (the VMM's virtio-console)
#   DEBS=DIR  take the kernel and busybox .debs from DIR (e.g. a previous run's OUT_DIR/debs)
#             instead of downloading them: no apt, no network, no root needed
#
# Writes OUT_DIR/Image (the decompressed arm64 Image, checked for "ARM\x64" at offset 56),
# OUT_DIR/initramfs.cpio.gz (busybox-static as /init: prints "linux-guest: userspace up" and
# powers off with `poweroff -f`), OUT_DIR/virt-linux.{dts,dtb} (virt-linux.dts.in with the
# initrd addresses the VMM's loader will use) and OUT_DIR/versions.txt. Without DEBS it needs
# root for apt (it adds the arm64 foreign architecture to dpkg, runs apt-get update, and installs
# cpio if missing).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/out/linux}
flavour=${FLAVOUR:-arm64}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ -n "${DEBS:-}" ]; then
    # Reuse .debs fetched before: nothing to download.
    debs=$(cd "$DEBS" && pwd)
    rm -rf "$out/kernel" "$out/busybox" "$out/initramfs"
else
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
    fi
    apt-get update -qq
    if ! command -v cpio >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cpio >/dev/null
    fi

    if [ -z "${KVER:-}" ]; then
        # linux-image-arm64 (meta) depends on linux-image-<abi>-arm64.
        pkg=$(apt-cache depends "linux-image-$flavour:arm64" |
            sed -n "s/^ *Depends: \(linux-image-[0-9][^:]*-$flavour\).*/\1/p" | head -n1)
    else
        pkg=linux-image-$KVER-$flavour
    fi
    [ -n "$pkg" ] || { echo "fetch-debian-guest.sh: cannot resolve linux-image-$flavour" >&2; exit 1; }

    debs=$out/debs
    rm -rf "$debs" "$out/kernel" "$out/busybox" "$out/initramfs"
    mkdir -p "$debs"
    # As root into a directory _apt cannot write: download unsandboxed, without apt's warning.
    (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg:arm64" busybox-static:arm64)
fi

# The digit before -$flavour keeps linux-image-*-cloud-arm64 out of the arm64 flavour.
kdeb=$(ls "$debs"/linux-image-*[0-9]-"$flavour"_*.deb)
bdeb=$(ls "$debs"/busybox-static_*.deb)
for f in "$kdeb" "$bdeb"; do
    [ "$(echo "$f" | wc -w)" = 1 ] || { echo "fetch-debian-guest.sh: more than one .deb: $f" >&2; exit 1; }
done
dpkg-deb -x "$kdeb" "$out/kernel"
dpkg-deb -x "$bdeb" "$out/busybox"

vmlinuz=$(ls "$out"/kernel/boot/vmlinuz-*)
# bookworm's signed linux-image-*-arm64 ships vmlinuz as the plain Image with its EFI stub ("MZ"
# at 0, "ARM\x64" at 56), not gzip-compressed; other builds may gzip it: handle both.
if gzip -t "$vmlinuz" 2>/dev/null; then
    gzip -dc "$vmlinuz" >"$out/Image"
else
    cp "$vmlinuz" "$out/Image"
fi
magic=$(od -An -tx4 -j56 -N4 "$out/Image" | tr -d ' ')
if [ "$magic" != "644d5241" ]; then
    echo "fetch-debian-guest.sh: $out/Image has no arm64 Image magic at offset 56 ($magic)" >&2
    exit 1
fi
cp "$out"/kernel/boot/config-* "$out/config" 2>/dev/null || true

# The initramfs: busybox-static, its applet links made by /init itself (busybox --install).
ird=$out/initramfs
mkdir -p "$ird/bin" "$ird/sbin" "$ird/usr/bin" "$ird/usr/sbin" "$ird/dev" "$ird/proc" "$ird/sys"
cp "$out/busybox/bin/busybox" "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
cat >"$ird/init" <<'EOF'
#!/bin/sh
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox --install -s
echo "linux-guest: userspace up"
echo "linux-guest: $(uname -a)"
echo "linux-guest: $(cat /proc/cmdline)"
head -n 3 /proc/meminfo
cat /proc/interrupts
EOF
if [ "${VIRTIO:-0}" = 1 ]; then
    # The virtio modules and their dependencies (the modinfo `depends=` of each, read from its
    # .modinfo strings, since a .deb has no modules.dep: depmod runs at install), in load order.
    moddir=$(ls -d "$out"/kernel/lib/modules/*/)
    mkdir -p "$ird/lib/modules"
    python3 - "$moddir" "$ird/lib/modules" virtio_mmio virtio_blk virtio_console \
        >"$ird/lib/modules/load-order" <<'PY'
import os, re, shutil, sys
moddir, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
norm = lambda n: n.replace("-", "_")
paths = {}
for d, _, files in os.walk(moddir):
    for f in files:
        if f.endswith(".ko"):
            paths[norm(f[:-3])] = os.path.join(d, f)
order = []
def add(name, seen=()):
    name = norm(name)
    if name in order:
        return
    if name in seen or name not in paths:
        sys.exit("fetch-debian-guest.sh: module %s: %s" % (name, "cycle" if name in seen else "not found"))
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", open(paths[name], "rb").read())
    for dep in filter(None, m.group(1).decode().split(",") if m else []):
        add(dep, seen + (name,))
    order.append(name)
for w in wanted:
    add(w)
for name in order:
    shutil.copy(paths[name], os.path.join(dest, name + ".ko"))
    print(name)
PY
    cat >>"$ird/init" <<'EOF'
echo "linux-guest: loading $(tr '\n' ' ' </lib/modules/load-order)"
for m in $(cat /lib/modules/load-order); do
    insmod /lib/modules/$m.ko || echo "linux-guest: insmod $m failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
echo "linux-guest: /proc/partitions:"
cat /proc/partitions
if [ -b /dev/vda ]; then
    q=/sys/block/vda/queue
    echo "linux-guest: vda queue: logical $(cat $q/logical_block_size) physical $(cat $q/physical_block_size) max_sectors_kb $(cat $q/max_sectors_kb) max_segments $(cat $q/max_segments) max_segment_size $(cat $q/max_segment_size)"
    echo "linux-guest: /dev/vda: $(blockdev --getsize64 /dev/vda) bytes, first 4 KiB:"
    dd if=/dev/vda bs=4096 count=1 2>/dev/null | hexdump -C | head -n 16
    marker=linux-guest-was-here
    echo "$marker" | dd of=/dev/vda bs=512 seek=100 conv=notrunc,fsync
    sync
    # Read it back from the device, not from the page cache.
    blockdev --flushbufs /dev/vda
    echo 3 >/proc/sys/vm/drop_caches
    back=$(dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c ${#marker})
    echo "linux-guest: sector 100 reads back '$back'"
    if [ "$back" = "$marker" ]; then
        echo "linux-guest: virtio-blk ok"
    else
        echo "linux-guest: virtio-blk FAILED"
    fi
    # A 512-byte write request: with the block size at 512 (BLKBSZSET, kept while fd 3 holds
    # the device open) writeback sends only the dirty 512-byte buffer. Sector 9 is in the middle
    # of the VMM's 4 KiB transfer unit 1, so the VMM reads the unit, merges and writes it back.
    # (Not busybox dd oflag=direct: with bs below a page its buffer is malloc'ed, the O_DIRECT
    # write fails with EINVAL, and dd quietly retries without O_DIRECT: a 4 KiB page write.)
    exec 3</dev/vda
    blockdev --setbsz 512 /dev/vda
    echo "linux-guest: block size $(blockdev --getbsz /dev/vda), stat before: $(cat /sys/block/vda/stat)"
    echo linux-guest-512-byte-write | dd of=/dev/vda bs=512 seek=9 count=1 conv=sync,notrunc,fsync 2>/dev/null
    echo "linux-guest: stat after: $(cat /sys/block/vda/stat)"
    exec 3<&-
    blockdev --flushbufs /dev/vda
    echo 3 >/proc/sys/vm/drop_caches
    back=$(dd if=/dev/vda bs=512 skip=9 count=1 2>/dev/null | head -c 26)
    echo "linux-guest: sector 9 reads back '$back'"
    echo "linux-guest: reading the whole disk"
    echo 3 >/proc/sys/vm/drop_caches
    time dd if=/dev/vda of=/dev/null bs=1M
    echo 3 >/proc/sys/vm/drop_caches
    echo "linux-guest: md5 of /dev/vda: $(md5sum </dev/vda)"
    # reads, merged, sectors, ms, writes, merged, sectors, ms, in flight, ..., flushes, ms
    echo "linux-guest: /sys/block/vda/stat: $(cat /sys/block/vda/stat)"
else
    echo "linux-guest: no /dev/vda: virtio-blk FAILED"
fi
if [ -c /dev/hvc0 ]; then
    echo "linux-guest: hello over virtio-console" >/dev/hvc0
    echo "linux-guest: wrote a line to /dev/hvc0"
else
    echo "linux-guest: no /dev/hvc0"
fi
grep -i -e virtio -e pl011 /proc/interrupts
EOF
fi
printf '%s\n' "${INIT_EXTRA:-}" 'echo "linux-guest: powering off"' 'poweroff -f' >>"$ird/init"
chmod 755 "$ird/init"
# /dev/console in the archive itself, so the kernel can open it before /init runs (cpio
# --reproducible and the fixed owner keep the archive independent of who runs this).
(cd "$ird" && {
    find . -mindepth 1 | LC_ALL=C sort
} | cpio -o -H newc -R 0:0 --quiet --reproducible >"$out/initramfs.cpio")
# Append a newc entry for dev/console (char 5:1) without needing mknod.
python3 - "$out/initramfs.cpio" <<'EOF'
import sys
path = sys.argv[1]
data = open(path, "rb").read()
trailer = data.rfind(b"070701")  # the TRAILER!!! entry is the last one
def entry(name, mode, rdevmaj, rdevmin, ino):
    n = name.encode() + b"\0"
    hdr = "070701" + "".join("%08X" % v for v in (
        ino, mode, 0, 0, 1, 0, 0, 0, 0, rdevmaj, rdevmin, len(n), 0))
    b = hdr.encode() + n
    b += b"\0" * (-len(b) % 4)
    return b
console = entry("dev/console", 0o20600, 5, 1, 999999)
tail = entry("TRAILER!!!", 0, 0, 0, 0)
out = data[:trailer] + console + tail
out += b"\0" * (-len(out) % 512)
open(path, "wb").write(out)
EOF
gzip -9 -n -f "$out/initramfs.cpio"

# The DTB: the loader does not patch /chosen, so compute where vmm-core's loader::plan puts the
# initrd for these sizes (RAM at 0x40000000, 256 MiB; kernel at the RAM base + text_offset with
# max(image_size, file length) bytes; DTB at the next 2 MiB boundary; initrd 4 KiB-aligned right
# after the kernel if it ends below the DTB, else 4 KiB-aligned after the DTB).
dts_in=$root/guests/linux/virt-linux.dts.in
sed -e 's/@INITRD_START@/0x0/' -e 's/@INITRD_END@/0x0/' "$dts_in" |
    dtc -q -I dts -O dtb -o "$out/virt-linux.dtb" -
addrs=$(python3 - "$out/Image" "$out/initramfs.cpio.gz" "$out/virt-linux.dtb" <<'PY'
import os, struct, sys
img, ird, dtb = sys.argv[1:4]
hdr = open(img, "rb").read(64)
text_offset, image_size = struct.unpack("<QQ", hdr[8:24])
if image_size == 0:
    text_offset = 0x80000
up = lambda v, a: (v + a - 1) & ~(a - 1)
ram, ram_end = 0x40000000, 0x50000000
kstart = up(ram, 0x200000) + text_offset
kend = kstart + max(image_size, os.path.getsize(img))
dtb_start = up(kend, 0x200000)
dtb_end = dtb_start + os.path.getsize(dtb)
size = os.path.getsize(ird)
start = up(kend, 0x1000)
if start + size > dtb_start:
    start = up(dtb_end, 0x1000)
assert start + size <= ram_end, "initrd does not fit in guest RAM"
print("%#x %#x %#x %#x" % (start, start + size, kstart, dtb_start))
PY
)
set -- $addrs
sed -e "/^\/\//!s/@INITRD_START@/$1/" -e "/^\/\//!s/@INITRD_END@/$2/" "$dts_in" >"$out/virt-linux.dts"
dtc -q -I dts -O dtb -o "$out/virt-linux.dtb" "$out/virt-linux.dts"

{
    echo "kernel: $(basename "$kdeb")"
    echo "busybox: $(basename "$bdeb")"
    echo "Image: $(wc -c <"$out/Image") bytes"
    echo "initramfs.cpio.gz: $(wc -c <"$out/initramfs.cpio.gz") bytes"
    echo "expected layout: kernel at $3, dtb at $4, initrd [$1, $2)"
    echo "virt-linux.dtb: $(wc -c <"$out/virt-linux.dtb") bytes"
} | tee "$out/versions.txt"
