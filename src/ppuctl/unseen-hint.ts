// ppuctl add: why grimseld may find no file where the operator has one (G8): its unit hides some directories.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { hiddenByUnits } from '../common/paths.js';

/** A hint when grimseld found no file where ppuctl's caller has one: a directory the unit hides from it. */
export function unseen(file: string, answer: string, exists: (file: string) => boolean = existsSync): string {
  // grimseld's unit gives it its own /tmp, or none of /home: ppuctl sees another.
  const hidden = hiddenByUnits(path.resolve(file));
  // ProtectHome=yes makes /home inaccessible to it (not absent): an operator's file there is answered with a
  // directory it may not search, which names /home itself, not the unit (found by a tester).
  if (!hidden || !/does not exist|may not search/.test(answer) || !exists(file)) return '';
  return ` (grimseld's unit has PrivateTmp=yes and ProtectHome=yes: it does not see your files below ${hidden}/; ` +
    'put them on the ramdisk or a storage, e.g. below /data, and add them from there)';
}
