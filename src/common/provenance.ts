// Provenance on the files themselves (I3): extended attributes with the checksum, the shift and the detector,
// written with fs-xattr on the ramdisk file and every storage copy, read back by `ppuctl verify` (I4).
//
// Names (read them with `getfattr -d -m - FILE`; `trusted.*` needs root):
//   <ns>.ppu.checksum   xxh128:<32 hex digits>        (the value `xxhsum -H2 FILE` prints)
//   <ns>.ppu.shift      <start, µs since 1970>:<uid>:<gid>
//   <ns>.ppu.detector   1MF
// <ns> is `user` where the file system takes it (ext4, xfs, tmpfs from Linux 6.6), else `trusted`, which tmpfs
// takes from root on every kernel (CentOS 7's ramdisk). Readers look for `user` first, then `trusted`.
//
// Always through a descriptor of the open file (`/proc/self/fd/N`, which reaches exactly that file):
// fs-xattr calls getxattr/setxattr, which follow a final symbolic link, and a user may own the directory.
import { tagged, untagged } from './checksum.js';

export type Namespace = 'user' | 'trusted';
const NAMESPACES: Namespace[] = ['user', 'trusted'];

export interface Provenance {
  /** hex digits of the XXH3-128 checksum */
  checksum: string;
  shift?: { startUs: bigint; uid: number; gid: number };
  detector?: string;
}

interface XattrApi {
  getAttributeSync(path: string, attr: string): Buffer;
  setAttributeSync(path: string, attr: string, value: Buffer | string): void;
}

let api: XattrApi | undefined;

/** Loads fs-xattr (an ES module, so loaded once at start with import()); call before the functions below. */
export async function initProvenance(): Promise<void> {
  // A Function keeps TypeScript from turning import() into require(), which cannot load an ES module.
  api ??= (await (new Function('m', 'return import(m)') as (m: string) => Promise<XattrApi>)('fs-xattr'));
}

function xattr(): XattrApi {
  if (!api) throw new Error('initProvenance() was not called');
  return api;
}

/**
 * Attribute `attr` of the open file `fd` (any namespace: caller-access.ts reads `system.posix_acl_access` with
 * it); undefined when the file has none or its file system takes none. Loaded by initProvenance() like the rest.
 */
export function fileAttribute(fd: number, attr: string): Buffer | undefined {
  try {
    return xattr().getAttributeSync(`/proc/self/fd/${fd}`, attr);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (code === 'ENODATA' || code === 'ENOATTR' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') return undefined;
    throw e;
  }
}

/** The errors of a file system (or a namespace of it) that takes no extended attributes. */
const REFUSED = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EPERM', 'EACCES']);

/**
 * Writes the provenance onto the open file `fd`. Returns the namespace used, or undefined when the file system
 * takes none (the checksum then lives in grimseld's journal only). `prefer` skips a namespace known to fail.
 */
export function writeProvenance(fd: number, p: Provenance, prefer: Namespace = 'user'): Namespace | undefined {
  const file = `/proc/self/fd/${fd}`;
  const values: Array<[string, string]> = [['checksum', tagged(p.checksum)]];
  if (p.shift) values.push(['shift', `${p.shift.startUs}:${p.shift.uid}:${p.shift.gid}`]);
  if (p.detector) values.push(['detector', p.detector]);
  for (const ns of prefer === 'user' ? NAMESPACES : ['trusted' as const]) {
    try {
      for (const [k, v] of values) xattr().setAttributeSync(file, `${ns}.ppu.${k}`, v);
      return ns;
    } catch (e) {
      if (!REFUSED.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
    }
  }
  return undefined;
}

/** The provenance recorded on the open file `fd`; undefined when it has no checksum attribute of ours. */
export function readProvenance(fd: number): (Provenance & { namespace: Namespace; recorded: string }) | undefined {
  const file = `/proc/self/fd/${fd}`;
  for (const ns of NAMESPACES) {
    let recorded: string;
    try {
      recorded = xattr().getAttributeSync(file, `${ns}.ppu.checksum`).toString('utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (code === 'ENODATA' || code === 'ENOATTR' || REFUSED.has(code)) continue;
      throw e;
    }
    const checksum = untagged(recorded) ?? '';
    const out: Provenance & { namespace: Namespace; recorded: string } = { checksum, namespace: ns, recorded };
    const get = (k: string): string | undefined => {
      try {
        return xattr().getAttributeSync(file, `${ns}.ppu.${k}`).toString('utf8');
      } catch {
        return undefined;
      }
    };
    const shift = /^(\d+):(\d+):(\d+)$/.exec(get('shift') ?? '');
    if (shift) out.shift = { startUs: BigInt(shift[1]!), uid: Number(shift[2]), gid: Number(shift[3]) };
    const detector = get('detector');
    if (detector) out.detector = detector;
    return out;
  }
  return undefined;
}
