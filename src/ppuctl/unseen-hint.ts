// ppuctl add: why grimseld may find no file where the operator has one (G8): its unit hides some directories.
import { existsSync } from 'node:fs';
import * as path from 'node:path';

/** Where grimseld's unit (PrivateTmp=yes, ProtectHome=yes) gives it a directory of its own or none: ppuctl sees another. */
const HIDDEN_FROM_GRIMSELD = ['/tmp/', '/var/tmp/', '/home/', '/root/', '/run/user/'];

/** A hint when grimseld found no file where ppuctl's caller has one: a directory the unit hides from it. */
export function unseen(file: string, answer: string, exists: (file: string) => boolean = existsSync): string {
  const hidden = HIDDEN_FROM_GRIMSELD.find((d) => path.resolve(file).startsWith(d));
  // ProtectHome=yes makes /home inaccessible to it (not absent): an operator's file there is answered with a
  // directory it may not search, which names /home itself, not the unit (found by a tester).
  if (!hidden || !/does not exist|may not search/.test(answer) || !exists(file)) return '';
  return ` (grimseld's unit has PrivateTmp=yes and ProtectHome=yes: it does not see your files below ${hidden}; ` +
    'put them on the ramdisk or a storage, e.g. below /data, and add them from there)';
}
