// The ppu.* attributes on each storage copy (I3): checksum, shift and detector, written through the copy's
// descriptor before it gets its final name (common/provenance.ts), in the namespace its storage takes: `user`
// where the file system takes it, else `trusted`, learned at a storage's first copy and kept. A storage that
// takes neither still gets its copies, without attributes (`none`); the dispatcher says so once per storage.
import { writeProvenance, type Namespace, type Provenance } from '../common/provenance.js';

/** Where a copy's attributes went: a namespace, or nowhere (the storage's file system refuses them). */
export type Attributes = Namespace | 'none';

/** Per storage target, what its copies took so far (in this copy thread). */
const taken = new Map<string, Attributes>();

/** Writes `p` onto the copy open as `fd` on the storage `base`; returns where it went. */
export function stampCopy(base: string, fd: number, p: Provenance): Attributes {
  const known = taken.get(base);
  if (known === 'none') return 'none';
  const ns = writeProvenance(fd, p, known ?? 'user') ?? 'none';
  if (ns !== known) taken.set(base, ns);
  return ns;
}
