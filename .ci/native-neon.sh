#!/usr/bin/env bash
# Cross-compiles the NEON and generic kernels plus native/test/kernel_test.cc for aarch64 with
# Debian's g++-aarch64-linux-gnu and runs the test under qemu-user (qemu-aarch64). Installs the
# two packages with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CXX_A64=aarch64-linux-gnu-g++
need=()
command -v "$CXX_A64" >/dev/null 2>&1 || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null 2>&1 || command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
  echo "== native-neon: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null || true
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static)

OUT=build-neon
mkdir -p "$OUT"
FLAGS="-std=c++17 -O2 -pthread -Inative"
echo "== native-neon: cross-compiling (generic + neon kernels, kernel_test)"
pids=()
for src in kernels/generic/kernels kernels/neon/kernels dispatch thread_pool; do
  $CXX_A64 $FLAGS -c "native/$src.cc" -o "$OUT/$(echo "$src" | tr / _).o" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
$CXX_A64 $FLAGS native/test/kernel_test.cc "$OUT"/kernels_generic_kernels.o "$OUT"/kernels_neon_kernels.o "$OUT"/dispatch.o "$OUT"/thread_pool.o -o "$OUT/kernel_test"
echo "== native-neon: running under $(basename "$QEMU")"
"$QEMU" -L /usr/aarch64-linux-gnu "$OUT/kernel_test" neon scalar
