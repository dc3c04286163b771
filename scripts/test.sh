#!/usr/bin/env bash
# Run every unit test (Criterion) and end-to-end test (pytest) and end with
# one line "N passed, N failed" counting them all. Exit non-zero on any
# failure, or when no test ran.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
export GATEHOUSE_BIN="$PWD/$BUILD/gatehouse"
# A failed GH_ASSERT / GH_BUG_ON aborts under test (include/gh.h).
export GATEHOUSE_ABORT_ON_BUG=1
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT

passed=0
failed=0

echo "== unit tests (Criterion)"
"$BUILD/gh-unit" --jobs 2 2>&1 | tee "$log_dir/unit.log"
unit_rc=${PIPESTATUS[0]}
syn=$(grep -a 'Synthesis:' "$log_dir/unit.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')
if [[ $syn =~ Tested:\ ([0-9]+).*Passing:\ ([0-9]+).*Failing:\ ([0-9]+).*Crashing:\ ([0-9]+) ]]; then
  passed=$((passed + BASH_REMATCH[2]))
  failed=$((failed + BASH_REMATCH[3]))
else
  echo "unit tests: no synthesis line (exit $unit_rc)"
  failed=$((failed + 1))
fi
if [ "$unit_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi

echo "== end-to-end tests (pytest)"
/usr/bin/python3 -m pytest -q -p no:cacheprovider --junitxml="$log_dir/e2e.xml" tests/e2e 2>&1 | tee "$log_dir/e2e.log"
e2e_rc=${PIPESTATUS[0]}
if [ -f "$log_dir/e2e.xml" ]; then
  read -r ep ef < <(/usr/bin/python3 - "$log_dir/e2e.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = f = s = 0
for su in suites:
    t += int(su.get("tests", 0)); s += int(su.get("skipped", 0))
    f += int(su.get("failures", 0)) + int(su.get("errors", 0))
print(t - f - s, f)
PY
)
  passed=$((passed + ep))
  failed=$((failed + ef))
  if [ "$e2e_rc" -ne 0 ] && [ "$ef" -eq 0 ]; then failed=$((failed + 1)); fi
else
  echo "end-to-end tests: pytest produced no report (exit $e2e_rc)"
  failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
