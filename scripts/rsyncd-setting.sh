#!/bin/sh
# Prints the value rsync takes for setting KEY of module ramdisk in rsyncd.conf FILE (nothing when it is not
# set): rsync's own rules, keys ignore case and blanks, a module's setting beats the global one (lines before
# the first section, or [global]), the last one wins. The detector package's upgrade runs it on a kept
# rsyncd.conf ('use chroot', 'auth users'). POSIX sh, sed and tr only: no awk, which is an alternatives link
# on some systems and so not always there in a scriptlet.
# Usage: rsyncd-setting.sh FILE KEY
want=$(printf '%s' "$2" | tr -d '[:space:]' | tr 'A-Z' 'a-z')
sed -e 's/\r$//' -e 's/^[[:space:]]*//' "$1" | {
  sec=; g=; m=; gset=; mset=
  while IFS= read -r l || [ -n "$l" ]; do
    case "$l" in '#'*|';'*|'') continue ;; esac
    case "$l" in
      '['*) sec=$(printf '%s' "$l" | sed -e 's/^\[[[:space:]]*//' -e 's/[[:space:]]*\].*$//' | tr 'A-Z' 'a-z'); continue ;;
      *=*) ;;
      *) continue ;;
    esac
    k=$(printf '%s' "${l%%=*}" | tr -d '[:space:]' | tr 'A-Z' 'a-z')
    [ "$k" = "$want" ] || continue
    v=$(printf '%s' "${l#*=}" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
    case "$sec" in ''|global) g=$v; gset=1 ;; ramdisk) m=$v; mset=1 ;; esac
  done
  if [ -n "$mset" ]; then printf '%s\n' "$m"; elif [ -n "$gset" ]; then printf '%s\n' "$g"; fi
}
