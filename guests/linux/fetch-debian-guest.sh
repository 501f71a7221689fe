#!/bin/sh
# Fetches a real Linux guest from Debian's packages and builds tiny initramfs images and an ext4
# disk image for it.
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
#   REFETCH=1 download the .debs again even when OUT_DIR/debs could be reused (see below)
#   DISK_SIZE size of OUT_DIR/disk.img (mke2fs syntax; default 16M, the Makefile's DISK_SIZE)
#   SOURCE_DATE_EPOCH  every timestamp in initramfs-shell.cpio.gz and disk.img (default
#             1704067200 = 2024-01-01 00:00:00 UTC), so that both are reproducible
#
# The .debs are kept in OUT_DIR/debs. When that already holds exactly one kernel .deb of the
# wanted flavour (and of KVER, if set) and exactly one busybox-static .deb, a run reuses them
# without apt or network, as with DEBS=OUT_DIR/debs.
#
# Writes OUT_DIR/Image (the decompressed arm64 Image, checked for "ARM\x64" at offset 56),
# OUT_DIR/initramfs.cpio.gz (busybox-static as /init: prints "linux-guest: userspace up" and
# powers off with `poweroff -f`), OUT_DIR/virt-linux.{dts,dtb} (virt-linux.dts.in with the
# initrd addresses the VMM's loader will use for initramfs.cpio.gz) and OUT_DIR/versions.txt.
# It also writes, whatever the options above:
#   OUT_DIR/initramfs-shell.cpio.gz  the interactive guest: /init loads virtio_mmio, virtio_blk,
#             virtio_console, virtio_net, ext4 and their dependencies, prints "linux-guest: userspace up" and
#             starts a login shell with job control on the console (prompt "linux$ "); it never
#             powers off by itself (type `poweroff -f`)
#   OUT_DIR/disk.img  a DISK_SIZE ext4 image of guests/linux/disk/, made with `mke2fs -d` (no
#             root, no loop mount) with a fixed UUID, hash seed and timestamps; check it, or what
#             a guest wrote to it, with guests/linux/check-disk.sh
# Without reusable .debs it needs root for apt (it adds the arm64 foreign architecture to dpkg,
# runs apt-get update, and installs cpio if missing). mke2fs, debugfs and e2fsck (e2fsprogs) must
# be installed.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/out/linux}
flavour=${FLAVOUR:-arm64}
epoch=${SOURCE_DATE_EPOCH:-1704067200}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# mke2fs, debugfs and e2fsck live in /sbin, which a user's PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

# The kernel .deb wanted. The digit before -$flavour keeps linux-image-*-cloud-arm64 out of the
# arm64 flavour.
if [ -n "${KVER:-}" ]; then
    kglob="linux-image-$KVER-${flavour}_*.deb"
else
    kglob="linux-image-*[0-9]-${flavour}_*.deb"
fi
bglob="busybox-static_*.deb"
# How many files in directory $1 match the pattern $2.
count() {
    n=0
    for f in "$1"/$2; do
        if [ -e "$f" ]; then n=$((n + 1)); fi
    done
    echo "$n"
}

if [ -z "${DEBS:-}" ] && [ "${REFETCH:-0}" != 1 ] &&
    [ "$(count "$out/debs" "$kglob")" = 1 ] && [ "$(count "$out/debs" "$bglob")" = 1 ]; then
    echo "fetch-debian-guest.sh: reusing the .debs in $out/debs (REFETCH=1 downloads them again)"
    DEBS=$out/debs
fi
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

for g in "$kglob" "$bglob"; do
    [ "$(count "$debs" "$g")" = 1 ] ||
        { echo "fetch-debian-guest.sh: want exactly one $g in $debs" >&2; exit 1; }
done
kdeb=$(ls "$debs"/$kglob)
bdeb=$(ls "$debs"/$bglob)
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

# modules DEST NAME...: copies the modules NAME... and everything they need into DEST as
# NAME.ko and prints their names in load order. A .deb has no modules.dep (depmod runs at
# install), so the order comes from each module's .modinfo strings: its `depends=` and the
# `pre:` modules of its `softdep=` (e.g. ext4 and jbd2 want crypto-crc32c, an alias of
# crc32c_generic: without it ext4 cannot mount a metadata_csum filesystem) come first.
moddir=$(ls -d "$out"/kernel/lib/modules/*/)
modules() {
    python3 - "$moddir" "$@" <<'PY'
import os, re, shutil, sys
moddir, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
norm = lambda n: n.replace("-", "_")
paths, aliases = {}, {}
for d, _, files in sorted(os.walk(moddir)):
    for f in sorted(files):
        if f.endswith(".ko"):
            paths[norm(f[:-3])] = os.path.join(d, f)
info = lambda name, key: [m.decode() for m in re.findall(
    rb"(?:^|\0)" + key + rb"=([^\0]*)(?=\0)", open(paths[name], "rb").read())]
for name in sorted(paths):
    for a in info(name, b"alias"):
        aliases.setdefault(a, []).append(name)
builtin = set()
if os.path.exists(os.path.join(moddir, "modules.builtin")):
    for line in open(os.path.join(moddir, "modules.builtin")):
        builtin.add(norm(os.path.basename(line.strip())[:-3]))
order = []
def add(name, seen=()):
    name = norm(name)
    if name in order:
        return
    if name in seen or name not in paths:
        sys.exit("fetch-debian-guest.sh: module %s: %s" % (name, "cycle" if name in seen else "not found"))
    for sd in info(name, b"softdep"):
        words = sd.split()
        pre = words[words.index("pre:") + 1:] if "pre:" in words else []
        if "post:" in pre:
            pre = pre[:pre.index("post:")]
        for p in pre:
            if norm(p) in paths:
                add(p, seen + (name,))
            elif len(aliases.get(p, [])) == 1:
                add(aliases[p][0], seen + (name,))
            elif norm(p) not in builtin:
                print("fetch-debian-guest.sh: module %s: softdep %s: %s" % (name, p,
                      "provided by %s" % aliases[p] if p in aliases else "not found"), file=sys.stderr)
    for dep in filter(None, (info(name, b"depends") or [""])[0].split(",")):
        add(dep, seen + (name,))
    order.append(name)
for w in wanted:
    add(w)
for name in order:
    shutil.copy(paths[name], os.path.join(dest, name + ".ko"))
    print(name)
PY
}

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
    mkdir -p "$ird/lib/modules"
    modules "$ird/lib/modules" virtio_mmio virtio_blk virtio_console >"$ird/lib/modules/load-order"
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
# make_cpio DIR FILE: DIR as the gzip'ed newc archive FILE.gz, with /dev/console in the archive
# itself, so the kernel can open it before /init runs (cpio --reproducible and the fixed owner
# keep the archive independent of who runs this).
make_cpio() {
    (cd "$1" && {
        find . -mindepth 1 | LC_ALL=C sort
    } | cpio -o -H newc -R 0:0 --quiet --reproducible >"$2")
    # Append a newc entry for dev/console (char 5:1) without needing mknod.
    python3 - "$2" <<'EOF'
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
    gzip -9 -n -f "$2"
}
make_cpio "$ird" "$out/initramfs.cpio"

# The interactive guest's initramfs: busybox-static, the virtio modules (virtio_net brings
# net_failover and failover) and ext4 with everything
# it needs, and a login shell with job control on the console. Every timestamp is $epoch, so the
# archive is reproducible.
sird=$out/initramfs-shell
rm -rf "$sird"
mkdir -p "$sird/bin" "$sird/sbin" "$sird/usr/bin" "$sird/usr/sbin" "$sird/dev" "$sird/proc" \
    "$sird/sys" "$sird/etc" "$sird/root" "$sird/mnt" "$sird/tmp" "$sird/lib/modules"
cp "$out/busybox/bin/busybox" "$sird/bin/busybox"
ln -s busybox "$sird/bin/sh"
modules "$sird/lib/modules" virtio_mmio virtio_blk virtio_console virtio_net ext4 >"$sird/lib/modules/load-order"
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' >"$sird/etc/passwd"
printf '%s\n' 'root:x:0:' >"$sird/etc/group"
cat >"$sird/etc/profile" <<'EOF'
# Read by the login shell of the interactive guest (fetch-debian-guest.sh). A test matches the
# prompt: keep it fixed, with nothing after the blank.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export HOME=/root
PS1='linux$ '
EOF
cat >"$sird/init" <<'EOF'
#!/bin/sh
# The interactive guest (guests/linux/fetch-debian-guest.sh): modules, then a login shell.
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/root
echo "linux-guest: loading" $(cat /lib/modules/load-order)
for m in $(cat /lib/modules/load-order); do
    insmod /lib/modules/$m.ko || echo "linux-guest: insmod $m failed"
done
echo "linux-guest: userspace up"
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -b /dev/vda ]; then
    echo "linux-guest: /dev/vda: $(blockdev --getsize64 /dev/vda) bytes"
else
    echo "linux-guest: no /dev/vda"
fi
# Only warnings and worse from the kernel on the console from here on (`dmesg -n 8` in the shell
# brings the rest back), so that notices such as ext4's mount line stay out of the shell's lines.
dmesg -n 4
echo "linux-guest: starting a shell on /dev/$(cat /sys/class/tty/console/active) at uptime $(cut -d' ' -f1 /proc/uptime)"
# cttyhack opens the console's real tty (ttyAMA0, not /dev/console) as the controlling terminal
# of the new session, so the shell has job control. The loop starts a new shell if one exits:
# /init (PID 1) must not exit. Nothing here powers off: `poweroff -f` does.
while :; do
    setsid cttyhack sh -l
    echo "linux-guest: the shell exited; starting a new one"
done
EOF
# Modes and times independent of who runs this, with which umask.
find "$sird" -type d -exec chmod 755 {} +
find "$sird" -type f -exec chmod 644 {} +
chmod 755 "$sird/init" "$sird/bin/busybox"
chmod 1777 "$sird/tmp"
chmod 700 "$sird/root"
find "$sird" -exec touch -h -d "@$epoch" {} +
make_cpio "$sird" "$out/initramfs-shell.cpio"

# The disk: guests/linux/disk/ as an ext4 image of DISK_SIZE, made by mke2fs -d without root and
# without a loop mount. A copy of the tree with normalised modes is the source; a fixed UUID and
# hash seed, E2FSPROGS_FAKE_TIME (the filesystem's and its new inodes' times) and debugfs (owner
# and times of every copied inode: mke2fs takes them from the source files) make the image
# reproducible. The inode tables and the journal are zeroed here (lazy_*_init=0), so the kernel
# does not zero them in the background after a mount (its ext4lazyinit thread wrote 2042 sectors
# within 5 s of mounting an image made without these options).
# The features are those of the host's mke2fs.conf for ext4 (bookworm: has_journal,
# extent, huge_file, flex_bg, metadata_csum, 64bit, dir_nlink, extra_isize; below 512 MiB, 1 KiB
# blocks), all of which Linux 6.1 mounts read-write.
disk_src=$root/guests/linux/disk
stage=$out/disk-root
rm -rf "$stage" "$out/disk.img"
if [ -n "$(cd "$disk_src" && find . ! -type f ! -type d)" ] ||
    [ -n "$(cd "$disk_src" && find . -name '*[[:space:]"\\]*')" ]; then
    echo "fetch-debian-guest.sh: $disk_src may hold only files and directories, named without blanks or quotes" >&2
    exit 1
fi
cp -R "$disk_src" "$stage"
find "$stage" -type d -exec chmod 755 {} +
find "$stage" -type f -exec chmod 644 {} +
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | sed 's|^\.||') >"$out/disk-files"
: >"$out/disk.img" # (else mke2fs says "Creating regular file")
E2FSPROGS_FAKE_TIME=$epoch mke2fs -q -t ext4 -L linux-guest \
    -U 6c696e75-782d-4775-6573-742d6469736b \
    -E hash_seed=6c696e75-782d-4775-6573-742d68617368,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0 \
    -d "$stage" -F "$out/disk.img" "${DISK_SIZE:-16M}"
{
    echo / && cat "$out/disk-files"
} | while read -r f; do
    for field in uid gid; do echo "sif $f $field 0"; done
    for field in atime mtime ctime crtime; do echo "sif $f $field @$epoch"; done
done >"$out/disk-debugfs"
# debugfs exits with 0 whatever happens: any line on stderr but its banner is an error.
E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$out/disk-debugfs" "$out/disk.img" 2>&1 >/dev/null |
    grep -v '^debugfs [0-9]' >"$out/disk-debugfs.log" || true
if [ -s "$out/disk-debugfs.log" ]; then
    cat "$out/disk-debugfs.log" >&2
    echo "fetch-debian-guest.sh: debugfs failed on $out/disk.img" >&2
    exit 1
fi
e2fsck -fn "$out/disk.img" >"$out/disk-e2fsck.log" 2>&1 ||
    { cat "$out/disk-e2fsck.log" >&2; echo "fetch-debian-guest.sh: $out/disk.img is not clean" >&2; exit 1; }
rm -f "$out/disk-debugfs" "$out/disk-debugfs.log"

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
    echo "initramfs-shell.cpio.gz: $(wc -c <"$out/initramfs-shell.cpio.gz") bytes, modules in load order:" $(cat "$sird/lib/modules/load-order")
    echo "disk.img: $(wc -c <"$out/disk.img") bytes, ext4 of guests/linux/disk:" $(cat "$out/disk-files")
    echo "disk.img features: $(dumpe2fs -h "$out/disk.img" 2>/dev/null | sed -n 's/^Filesystem features: *//p')"
} | tee "$out/versions.txt"
