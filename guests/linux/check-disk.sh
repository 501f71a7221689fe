#!/bin/sh
# Checks an ext4 disk image on the host, without root or a loop mount: the filesystem must be
# clean (no journal left to replay, i.e. the guest unmounted it; `e2fsck -fn` finds nothing to
# fix), and each FILE (a path inside the image) must exist as a regular file whose md5 is
# EXPECTED_MD5.
#
#   guests/linux/check-disk.sh IMAGE [FILE EXPECTED_MD5]...
#
# e.g. guests/linux/check-disk.sh build/out/linux/disk.img \
#          /hello.txt "$(md5sum <guests/linux/disk/hello.txt | cut -d' ' -f1)"
#
# Prints one line per check, then exactly one line starting with "check-disk: PASS" or
# "check-disk: FAIL"; exits 0 only on PASS (2 on bad usage). The files are read with debugfs.
set -u
PATH=$PATH:/usr/sbin:/sbin

usage() {
    echo "usage: $0 IMAGE [FILE EXPECTED_MD5]..." >&2
    exit 2
}
[ $# -ge 1 ] && [ $(($# % 2)) = 1 ] || usage
img=$1
shift
fail() {
    echo "check-disk: FAIL $img: $*"
    exit 1
}
[ -f "$img" ] || fail "no such file"
for t in e2fsck debugfs dumpe2fs md5sum; do
    command -v "$t" >/dev/null || fail "$t not found (install e2fsprogs / coreutils)"
done

# A guest that synced but did not unmount leaves committed transactions in the journal:
# e2fsck -n skips the replay and still exits with 0, and debugfs reads the filesystem without them.
features=$(dumpe2fs -h "$img" 2>/dev/null | sed -n 's/^Filesystem features: *//p')
[ -n "$features" ] || fail "not an ext2/3/4 filesystem (dumpe2fs -h found no features)"
case " $features " in
*" needs_recovery "*) fail "needs_recovery is set: the journal holds changes not yet written back (was it unmounted?)" ;;
esac
log=$(e2fsck -fn "$img" 2>&1)
rc=$?
# e2fsck -n also exits with 0 after answering "no" to a fix it considers minor (wrong free
# counts, for one): any such answer is a failure here.
if [ "$rc" != 0 ] || printf '%s\n' "$log" | grep -q -e '? no$' -e '^Warning'; then
    printf '%s\n' "$log" | sed 's/^/check-disk:   e2fsck: /'
    fail "e2fsck -fn exited with $rc or found something to fix: the filesystem is not clean"
fi
echo "check-disk:   e2fsck -fn: clean ($(printf '%s\n' "$log" | tail -n 1))"

bad=0
n=0
while [ $# -ge 2 ]; do
    f=$1 want=$2
    shift 2
    n=$((n + 1))
    case $f in
    /*) ;;
    *) f=/$f ;;
    esac
    case $f in
    *[[:space:]\"]*) echo "check-disk:   $f: blanks and quotes are not supported"; bad=$((bad + 1)); continue ;;
    esac
    case $want in
    *[!0-9a-f]* | "") echo "check-disk:   $f: '$want' is not an md5 (32 lowercase hex digits)"; bad=$((bad + 1)); continue ;;
    esac
    [ ${#want} = 32 ] || { echo "check-disk:   $f: '$want' is not an md5 (32 lowercase hex digits)"; bad=$((bad + 1)); continue; }
    # debugfs exits with 0 even for a missing file: ask for the inode's type first.
    if ! debugfs -R "stat \"$f\"" "$img" 2>/dev/null | grep -q 'Type: regular'; then
        echo "check-disk:   $f: missing (or not a regular file)"
        bad=$((bad + 1))
        continue
    fi
    got=$(debugfs -R "cat \"$f\"" "$img" 2>/dev/null | md5sum | cut -d' ' -f1)
    if [ "$got" = "$want" ]; then
        echo "check-disk:   $f: md5 $got as expected"
    else
        echo "check-disk:   $f: md5 $got, expected $want"
        bad=$((bad + 1))
    fi
done

if [ "$bad" != 0 ]; then
    fail "$bad of $n files wrong"
fi
echo "check-disk: PASS $img: clean, $n files as expected"
