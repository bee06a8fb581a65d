#!/bin/sh
# Whether rsyncd.conf FILE leaves module ramdisk without a chroot: exit 0 when it does (say so), 1 when the
# module is chrooted. rsync's own rules: keys ignore case and blanks, a module's setting beats the global one
# (lines before the first section, or [global]), the last one wins, and no setting at all means a chroot.
# The detector package's upgrade runs it on a kept rsyncd.conf. POSIX sh, sed and tr only: no awk, which is
# an alternatives link on some systems and so not always there in a scriptlet.
sed -e 's/\r$//' -e 's/^[[:space:]]*//' "$1" | {
  sec=; g=; m=
  while IFS= read -r l || [ -n "$l" ]; do
    case "$l" in '#'*|';'*|'') continue ;; esac
    case "$l" in
      '['*) sec=$(printf '%s' "$l" | sed -e 's/^\[[[:space:]]*//' -e 's/[[:space:]]*\].*$//' | tr 'A-Z' 'a-z'); continue ;;
      *=*) ;;
      *) continue ;;
    esac
    k=$(printf '%s' "${l%%=*}" | tr -d '[:space:]' | tr 'A-Z' 'a-z')
    [ "$k" = usechroot ] || continue
    v=$(printf '%s' "${l#*=}" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' | tr 'A-Z' 'a-z')
    case "$sec" in ''|global) g=$v ;; ramdisk) m=$v ;; esac
  done
  v=${m:-$g}
  case "$v" in no|false|0) exit 0 ;; esac
  exit 1
}
