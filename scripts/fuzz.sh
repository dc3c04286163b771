#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan) in build-fuzz and run
# every fuzz_* target meson built for SECONDS each (default 60), starting
# from a temporary copy of its seed corpus in tests/fuzz/corpus/<name>, so
# the repo's corpus stays as committed. One result line per target:
#   fuzz <name>: ok (<runs> runs, cov <n>)   or   fuzz <name>: FAILED (<why>)
# then "N passed, N failed". Exit non-zero on any finding (crash, leak,
# timeout, out-of-memory) or when no target ran. Findings are copied to
# $FUZZ_ARTIFACTS (default build-fuzz/findings/<name>/) for the unit test
# every finding must become.
#
# Environment: FUZZ_BUILD (default build-fuzz). The targets run one after
# another, one process each, so a 2-core CI box is not oversubscribed.
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
BUILD=${FUZZ_BUILD:-build-fuzz}
ARTIFACTS=${FUZZ_ARTIFACTS:-$BUILD/findings}

if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang meson setup "$BUILD" -Dfuzz=true -Db_sanitize=address,undefined \
    -Db_lundef=false >/dev/null || { echo "fuzz: meson setup failed"; echo "0 passed, 1 failed"; exit 1; }
fi
if ! ninja -C "$BUILD" >"$BUILD/ninja.log" 2>&1; then
  cat "$BUILD/ninja.log"
  echo "fuzz: build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# Longest sensible input per target: a line-oriented target needs a few
# limits' worth of bytes, a config file more; longer inputs only slow it.
max_len_for() {
  case "$1" in
    conf) echo 8192 ;;
    imap_parse|pop3_parse) echo 16384 ;;
    proxy_proto) echo 1024 ;;
    *) echo 4096 ;;
  esac
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
targets=$(find "$BUILD" -maxdepth 1 -type f -perm -u+x -name 'fuzz_*' -printf '%f\n' | sort)
for bin in $targets; do
  name=${bin#fuzz_}
  corpus="$tmp/$name"
  mkdir -p "$corpus" "$ARTIFACTS/$name"
  if [ -d "tests/fuzz/corpus/$name" ]; then
    cp -r "tests/fuzz/corpus/$name/." "$corpus/"
  fi
  dict_arg=()
  [ -f "tests/fuzz/$name.dict" ] && dict_arg=(-dict="tests/fuzz/$name.dict")
  log="$tmp/$name.log"
  # -error_exitcode/-timeout_exitcode make every kind of finding a failure;
  # detect_leaks stays on (the default) so a leak is a finding too.
  ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
  "$BUILD/$bin" "$corpus" "${dict_arg[@]}" -max_total_time="$SECONDS_EACH" \
    -max_len="$(max_len_for "$name")" -timeout=10 -rss_limit_mb=2048 \
    -error_exitcode=77 -timeout_exitcode=78 -print_final_stats=1 \
    -artifact_prefix="$ARTIFACTS/$name/" >"$log" 2>&1
  rc=$?
  runs=$(grep -a -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -a -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
    echo "fuzz $name: ok (${runs} runs, cov ${cov:-?}, ${SECONDS_EACH}s)"
    passed=$((passed + 1))
  else
    why=$(grep -a -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY:' "$log" || true)
    echo "fuzz $name: FAILED (exit $rc) ${why}"
    tail -40 "$log" | sed 's/^/    /'
    ls "$ARTIFACTS/$name" 2>/dev/null | sed 's/^/    finding: /'
    failed=$((failed + 1))
  fi
done
if [ -z "$targets" ]; then
  echo "fuzz: no fuzz_* target in $BUILD"
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
