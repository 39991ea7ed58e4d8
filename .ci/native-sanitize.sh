#!/usr/bin/env bash
# Builds the addon with cmake-js under AddressSanitizer + UndefinedBehaviorSanitizer into
# build-asan/ (separate from build/), then runs the native parity and native tests, and the
# corrupted-argument calls of test/native-fuzz.test.ts, against that build
# (SIMD_ATTENTION_NATIVE_PATH points the loader at it; libasan is preloaded into node, which is
# not itself instrumented). Any sanitizer report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=build-asan
echo "== native-sanitize: cmake-js build ($OUT, ASan+UBSan)"
node_modules/.bin/cmake-js build -O "$OUT" -m --CDSIMD_ATTENTION_SANITIZE=ON --CDCMAKE_BUILD_TYPE=RelWithDebInfo -B RelWithDebInfo \
  > "$OUT.log" 2>&1 || { tail -50 "$OUT.log"; exit 1; }
ADDON=$(find "$OUT" -name simd_attention.node -print -quit)
[ -n "$ADDON" ] || { echo "no simd_attention.node under $OUT"; exit 1; }
ADDON=$(realpath "$ADDON")
LIBASAN=$(${CXX:-g++} -print-file-name=libasan.so)
[ -e "$LIBASAN" ] || { echo "libasan not found ($LIBASAN)"; exit 1; }
echo "== native-sanitize: $ADDON (preloading $LIBASAN)"

export SIMD_ATTENTION_NATIVE_PATH="$ADDON"
export SIMD_ATTENTION_SANITIZED=1
export SIMD_ATTENTION_REQUIRE=native
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:detect_odr_violation=0"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
LD_PRELOAD="$LIBASAN" node_modules/.bin/mocha --no-config -n import=tsx --timeout 600000 --reporter dot \
  test/native.test.ts test/native-fuzz.test.ts test/parity.test.ts 2>&1 | tee "$OUT/mocha.log"
status=${PIPESTATUS[0]}
if grep -qE "ERROR: AddressSanitizer|runtime error:" "$OUT/mocha.log"; then
  echo "== native-sanitize: sanitizer reports found"
  exit 1
fi
exit "$status"
