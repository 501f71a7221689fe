#!/bin/sh
# Builds the test guest and flattens it into an arm64 Image with the pinned toolchain's own
# rust-objcopy.
#
#   guests/testguest/build-image.sh [--bench] [OUT_DIR]
#
# Writes OUT_DIR/testguest.{elf,Image} (or testguest-bench.* with --bench, the benchmark
# build); OUT_DIR defaults to build/out/guests. CARGO_TARGET_DIR defaults to target/guest.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

# GUEST_FEATURES adds cargo features (e.g. hvfault-probe).
features=${GUEST_FEATURES:+--features $GUEST_FEATURES}
name=testguest
if [ "${1:-}" = "--bench" ]; then
    features="--features bench${GUEST_FEATURES:+,$GUEST_FEATURES}"
    name=testguest-bench
    shift
fi
out=${1:-build/out/guests}
target_dir=${CARGO_TARGET_DIR:-target/guest}

# shellcheck disable=SC2086 # $features is empty or two words
CARGO_TARGET_DIR=$target_dir ${CARGO:-cargo} build --release --target aarch64-unknown-none \
    -p testguest $features

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
objcopy=$sysroot/lib/rustlib/$host/bin/rust-objcopy
if [ ! -x "$objcopy" ]; then
    echo "build-image.sh: $objcopy is missing (it ships with rustc since 1.8x)" >&2
    exit 1
fi

mkdir -p "$out"
cp "$target_dir/aarch64-unknown-none/release/testguest" "$out/$name.elf"
# rust-objcopy needs the toolchain's libLLVM from $sysroot/lib, which its RUNPATH does not name
# (rustc sets the library path itself when it runs the tool).
LD_LIBRARY_PATH=$sysroot/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
    "$objcopy" -O binary "$out/$name.elf" "$out/$name.Image"

magic=$(od -An -tx4 -j56 -N4 "$out/$name.Image" | tr -d ' ')
if [ "$magic" != "644d5241" ]; then
    echo "build-image.sh: $out/$name.Image has no arm64 Image magic at offset 56 ($magic)" >&2
    exit 1
fi
echo "$out/$name.Image: $(wc -c <"$out/$name.Image") bytes"
