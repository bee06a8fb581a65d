#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) to build, run and test the PPU data movers:
# system packages, npm dependencies from the lockfile, and the compiled output.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "bootstrap: run as root (apt-get, and the daemons set file ownership)" >&2
  exit 1
fi

# rsync: transport (client and the detector-side daemon in tests); inotify-tools: furka-agent's inotifywait;
# dbus + dbus-daemon: the bus;
# systemd: busctl; libsystemd-dev + build tools: the sd-notify native module; attr: xattr tools;
# systemd-container: systemd-nspawn for the system tier; rpm: rpmbuild; rpmlint: checks the RPMs;
# ntpsec-ntpdate: time sync (the detector package's timer, run in the system tier's container).
# xxhash: xxhsum, the reference the checksum tests compare with (and what a facility checks copies with);
# lsyncd, gnuplot-nox: the benchmarks' lsyncd baseline and latency plot (npm run bench);
# btrfs-progs: mkfs.btrfs, for the agent's watch check on a btrfs detector ramdisk (test/unit/watch-check.test.ts).
# strace: which records reach the disk, read from the system calls (test/unit/owed-records-flushed.test.ts).
# bindfs: a FUSE storage that hangs when stopped with SIGSTOP, as a hard NFS mount whose server hangs (grimseld-hung-storage.test.ts).
PACKAGES=(rsync inotify-tools dbus dbus-daemon systemd libsystemd-dev systemd-container rpm rpmlint attr ntpsec-ntpdate
          python3 make g++ pkg-config xxhash lsyncd gnuplot-nox btrfs-progs strace bindfs)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
echo "bootstrap: ready"
