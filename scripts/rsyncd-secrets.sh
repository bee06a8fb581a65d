#!/bin/sh
# Writes the detector rsync daemon's secrets file from the detector server's key (F1, S6): one line
# 'USER:KEY', root's, mode 0600 (rsync's 'strict modes' refuses anything looser). ppu-detector-rsyncd.service
# runs it before every start, so the daemon always asks for the key furka-agent takes and the PPU's furkad
# holds a copy of (rsync_password_file, agent_key_file): one key per detector server, copied once.
# Usage: rsyncd-secrets.sh KEYFILE SECRETSFILE [USER]   (USER default: furkad, furkad's rsync_user default)
# POSIX sh, tr and find only (it runs in the unit's sandbox, and on CentOS 7).
set -eu
key=$1
out=$2
user=${3:-furkad}
make="(umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \\n' > $key)"
if [ -L "$key" ] || [ ! -f "$key" ]; then
  printf '%s\n' "rsyncd-secrets: $key does not exist or is not a regular file: the detector package makes it at install; make it with $make, then copy it to the PPU (README, Install)" >&2
  exit 1
fi
if [ -n "$(find "$key" -prune \( ! -user 0 -o -perm -g=r -o -perm -o=r -o -perm -g=w -o -perm -o=w \) -print)" ]; then
  printf '%s\n' "rsyncd-secrets: $key must be root's and open to nobody else (chown root: $key; chmod 0600 $key): whoever reads it can pull and delete the detector's files" >&2
  exit 1
fi
k=$(tr -d ' \t\r\n' < "$key")
if [ "${#k}" -lt 16 ]; then
  printf '%s\n' "rsyncd-secrets: $key holds no key (at least 16 visible characters); make it with $make" >&2
  exit 1
fi
umask 077
printf '%s:%s\n' "$user" "$k" > "$out.new"
mv -f "$out.new" "$out"
