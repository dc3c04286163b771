#!/usr/bin/env bash
# CI: build gatehouse with AddressSanitizer + UndefinedBehaviorSanitizer in
# build-asan and run the whole suite (unit + end-to-end) against it. A
# sanitizer report fails the test it happens in: Criterion sees the crash
# (UBSan halts on the first error), and the e2e fixtures fail a test whose
# gatehouse wrote a report to stderr. Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${ASAN_BUILD:-build-asan}

if [ ! -f "$BUILD/build.ninja" ] &&
   ! meson setup "$BUILD" -Db_sanitize=address,undefined -Db_lundef=false >/dev/null; then
  echo "asan: meson setup failed"
  echo "0 passed, 1 failed"
  exit 1
fi
if ! ninja -C "$BUILD" >"$BUILD/ninja.log" 2>&1; then
  cat "$BUILD/ninja.log"
  echo "asan: build failed"
  echo "0 passed, 1 failed"
  exit 1
fi
# Reports go to stderr (the fixtures read it); UB stops the process so it
# cannot be missed; leaks are checked at exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
bash scripts/test.sh "$BUILD"
