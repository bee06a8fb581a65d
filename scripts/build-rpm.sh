#!/usr/bin/env bash
# Builds the three RPMs (S6) from the working tree into build/rpm/: ppu-movers (PPU),
# ppu-movers-detector (detector server) and ppu-movers-common (the compiled tree both run from).
# `npm run rpm`, or: scripts/build-rpm.sh [--release N] [--out DIR]
# Build on CentOS 7 x86_64 for production: %build compiles the native modules for the node and libc it finds.
set -euo pipefail
cd "$(dirname "$0")/.."

# The release: the number of commits up to HEAD, so that the packages of a later commit upgrade (rpm -U, yum
# update) those of an earlier one; 1 outside a git checkout. --release N sets it.
release=$(git rev-list --count HEAD 2>/dev/null || echo 1)
out=build/rpm
while [ $# -gt 0 ]; do
  case "$1" in
    --release) release=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--release N] [--out DIR]" >&2; exit 2 ;;
  esac
done
command -v rpmbuild >/dev/null || { echo "build-rpm: rpmbuild not found (Debian: apt-get install rpm; CentOS: yum install rpm-build)" >&2; exit 1; }

version=$(node -p 'require("./package.json").version')
top=$(mktemp -d /tmp/ppu-rpmbuild-XXXXXX)
trap 'rm -rf "$top"' EXIT
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS} "$out"

# Source0: every file git tracks or would track (the working tree as tested), not node_modules or dist.
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - --transform "s,^,ppu-movers-$version/," -czf "$top/SOURCES/ppu-movers-$version.tar.gz"

# BuildRequires are checked against the rpm database; a machine without one (Debian) has none to check.
nodeps=()
rpm -q rpm >/dev/null 2>&1 || nodeps=(--nodeps)

rpmbuild -bb "${nodeps[@]}" \
  --define "_topdir $top" \
  --define "ppu_version $version" \
  --define "ppu_release $release" \
  rpm/ppu-movers.spec
built=$(find "$top/RPMS" -name "*-$version-$release*.rpm")
# Errors fail the build; the filters (and why) are in rpm/ppu-movers.rpmlintrc.
if command -v rpmlint >/dev/null; then
  rpmlint -r rpm/ppu-movers.rpmlintrc $built rpm/ppu-movers.spec | grep -v ' W: ' || { echo "build-rpm: rpmlint found errors" >&2; exit 1; }
else
  echo "build-rpm: rpmlint not installed; packages not linted" >&2
fi
cp $built "$out/"
ls -1 "$out"/*-"$version"-"$release".*.rpm
