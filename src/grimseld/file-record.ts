// One file grimseld is responsible for, kept small (issue 7): 100 000 of them may wait for a storage, so
// a record is one fixed-shape object, its copy states one integer, its origins a few bits, and the part to
// replicate an offset into the source path rather than a second string.
import { allPending, type PackedStates } from './copy-states.js';

/** What became of a file's original on the ramdisk (or of its internal copy). */
export type Origin = 'present' | 'linked' | 'deleted' | 'gone';
const ORIGINS: readonly Origin[] = ['present', 'linked', 'deleted', 'gone'];

/** A file as grimseld takes it: where it is, what to replicate, and what it must still be when copied. */
export interface NewFile {
  src: string;
  rel: string;
  size: number;
  mtimeMs: number;
  ino: number;
  dev: number;
}

const ON_RAMDISK = 1 << 4;

/** `rel` as an offset into `src` when it is the end of it after a '/' (always, for checked paths), else the string. */
function relIn(src: string, rel: string): number | string {
  const at = src.length - rel.length;
  return at > 0 && src[at - 1] === '/' && src.endsWith(rel) ? at : rel;
}

export class FileRecord implements NewFile {
  readonly src: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
  readonly dev: number;
  /** Copy state per storage, indexed as the catalog's storage list (copy-states.ts). */
  states: PackedStates;
  // Plain (not #private) fields: TypeScript's ES2021 output would keep #fields in a WeakMap per field.
  private readonly relAt: number | string;
  /** Bits 0-1: ramdisk origin, 2-3: internal origin, 4: on the ramdisk. */
  private flags: number;

  constructor(readonly id: number, readonly usertime: bigint, f: NewFile, storages: number, onRamdisk: boolean) {
    this.src = f.src;
    this.relAt = relIn(this.src, f.rel);
    this.size = f.size;
    this.mtimeMs = f.mtimeMs;
    this.ino = f.ino;
    this.dev = f.dev;
    this.states = allPending(storages);
    this.flags = onRamdisk ? ON_RAMDISK : 0;
  }

  /** The part of the path replicated below each storage target (SPEC G4). */
  get rel(): string {
    return typeof this.relAt === 'number' ? this.src.slice(this.relAt) : this.relAt;
  }

  /** Whether `src` lies on the PPU ramdisk (cleanup and the fill guard may touch it). */
  get onRamdisk(): boolean {
    return (this.flags & ON_RAMDISK) !== 0;
  }

  get ramdisk(): Origin {
    return ORIGINS[this.flags & 3]!;
  }

  set ramdisk(o: Origin) {
    this.flags = (this.flags & ~3) | ORIGINS.indexOf(o);
  }

  get internal(): Origin {
    return ORIGINS[(this.flags >> 2) & 3]!;
  }

  set internal(o: Origin) {
    this.flags = (this.flags & ~12) | (ORIGINS.indexOf(o) << 2);
  }

  /** Same file as `f`: a delivery re-sent after a crash is not taken twice. */
  sameAs(f: NewFile): boolean {
    return this.ino === f.ino && this.dev === f.dev && this.size === f.size && this.mtimeMs === f.mtimeMs;
  }
}
