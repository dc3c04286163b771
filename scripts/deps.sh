#!/usr/bin/env bash
# Install the Debian packages gatehouse needs to build, test, demo and bench.
# Usage: scripts/deps.sh [build|test|demo|bench|fuzz|deb|all]   (default: test)
# Installs only what is missing, so it is cheap to run before every make target.
set -euo pipefail

what=${1:-test}
build_pkgs="build-essential pkg-config meson ninja-build libuv1-dev libssl-dev libmemcached-dev
            node-llhttp libcriterion-dev libconfig-dev libsystemd-dev libpcre2-dev zlib1g-dev
            libbrotli-dev libnghttp2-dev"
run_pkgs="dovecot-imapd dovecot-pop3d memcached openssl curl python3 python3-pytest haproxy
          iproute2 wrk nghttp2-client"
bench_pkgs="nginx libnginx-mod-mail"
fuzz_pkgs="clang libclang-rt-14-dev"
# make deb (scripts/deb.sh): dpkg-buildpackage with debhelper; lintian checks
# the result. The test suite builds the package too (tests/e2e/test_deb.py).
deb_pkgs="dpkg-dev debhelper fakeroot lintian"
# CI (.ci/run) also fuzzes, and runs an e2e subset under valgrind.
# promtool (package prometheus, ~96 MB installed) checks monitoring/'s alerting
# rules in the test suite (tests/e2e/test_monitoring.py).
ci_pkgs="$fuzz_pkgs valgrind prometheus"
# A real browser loads the web test app through gatehouse
# (tests/e2e/test_browser.py): chromium headless, driven by selenium.
browser_pkgs="chromium chromium-driver python3-selenium"

case "$what" in
  build) pkgs="$build_pkgs" ;;
  test) pkgs="$build_pkgs $run_pkgs $ci_pkgs $deb_pkgs $browser_pkgs" ;;
  demo) pkgs="$build_pkgs $run_pkgs" ;;
  bench) pkgs="$build_pkgs $run_pkgs $bench_pkgs" ;;
  fuzz) pkgs="$build_pkgs $fuzz_pkgs" ;;
  deb) pkgs="$build_pkgs $deb_pkgs" ;;
  all) pkgs="$build_pkgs $run_pkgs $bench_pkgs $ci_pkgs $deb_pkgs $browser_pkgs" ;;
  *) echo "usage: $0 [build|test|demo|bench|fuzz|deb|all]" >&2; exit 2 ;;
esac

missing=()
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Do not let package post-install scripts start system-wide services (dovecot,
# memcached, nginx, haproxy): the tests and the demo run their own instances.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
