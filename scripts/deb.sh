#!/usr/bin/env bash
# Build the Debian package gatehouse_<version>_<arch>.deb with
# dpkg-buildpackage (debhelper + meson, debian/) from a copy of the source
# tree in a temporary directory, so nothing is written beside the checkout.
# Usage: scripts/deb.sh [OUTDIR]   (default: the top of the source tree)
# Then runs lintian on it when lintian is installed (debian/README.source
# explains what it may say). About 30 s on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
mkdir -p "${1:-$top}"
out=$(realpath "${1:-$top}")

version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" meson.build | head -1)
debversion=$(dpkg-parsechangelog -S Version)
if [ "$version" != "$debversion" ]; then
  echo "deb: meson.build says $version but debian/changelog says $debversion" >&2
  exit 1
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/gh-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/gatehouse-$version"
# The tracked files and new ones not ignored, as they are in the work tree.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard |
    (while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done) |
    tar -c --null -T - -f - | tar -x -f - -C "$stage/gatehouse-$version"
else
  tar -c --exclude='./build*' --exclude='./.git' --exclude='./*.deb' -f - . |
    tar -x -f - -C "$stage/gatehouse-$version"
fi

start=$(date +%s)
(cd "$stage/gatehouse-$version" &&
  DEB_BUILD_OPTIONS="nocheck parallel=${JOBS:-2} ${DEB_BUILD_OPTIONS:-}" \
    dpkg-buildpackage -b -us -uc >"$stage/build.log" 2>&1) || {
  tail -40 "$stage/build.log" >&2
  echo "deb: dpkg-buildpackage failed" >&2
  exit 1
}
deb=$(ls "$stage"/gatehouse_"$version"_*.deb)
cp "$deb" "$out/"
echo "deb: built $out/$(basename "$deb") in $(( $(date +%s) - start )) s"
if [ -z "${GATEHOUSE_DEB_NO_LINTIAN:-}" ] && command -v lintian >/dev/null; then
  echo "deb: lintian:"
  lintian --info --pedantic "$out/$(basename "$deb")" || true
fi
