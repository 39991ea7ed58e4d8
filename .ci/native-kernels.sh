#!/usr/bin/env bash
# Builds native/test/kernel_test.cc with every x86-64 kernel unit (each with its own flags from
# native/sources.json) and the test-only emulated 16-lane unit (native/test/emu16_kernels.cc),
# then runs it: every ISA this CPU has against a double-precision reference, plus "emu16", which
# runs the shared template code as AVX-512's 16 lanes shape it on any CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(uname -m)" = x86_64 ] || { echo "== native-kernels: not x86-64, skipped"; exit 0; }

OUT=build-kernels
mkdir -p "$OUT"
CXX=${CXX:-g++}
FLAGS="-std=c++17 -O2 -pthread -fno-math-errno -Inative"
flags() { node -p "require('./native/sources.json').flags['$1'].join(' ')"; }
echo "== native-kernels: compiling"
pids=()
$CXX $FLAGS -c native/kernels/generic/kernels.cc -o "$OUT/generic.o" & pids+=($!)
$CXX $FLAGS $(flags avx2) -c native/kernels/avx2/kernels.cc -o "$OUT/avx2.o" & pids+=($!)
$CXX $FLAGS $(flags avx512) -Wno-uninitialized -Wno-maybe-uninitialized -c native/kernels/avx512/kernels.cc -o "$OUT/avx512.o" & pids+=($!)
$CXX $FLAGS -c native/test/emu16_kernels.cc -o "$OUT/emu16.o" & pids+=($!)
$CXX $FLAGS -c native/dispatch.cc -o "$OUT/dispatch.o" & pids+=($!)
$CXX $FLAGS -c native/thread_pool.cc -o "$OUT/thread_pool.o" & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
$CXX $FLAGS -DSA_KERNEL_TEST_EMU16 native/test/kernel_test.cc "$OUT"/*.o -o "$OUT/kernel_test"
echo "== native-kernels: running"
"$OUT/kernel_test"
"$OUT/kernel_test" emu16
