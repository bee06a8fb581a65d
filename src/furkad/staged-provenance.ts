// The provenance furkad writes onto each staged file before it gets its final name (I3): its checksum, the
// shift it belongs to and its detector, as extended attributes through the open file, so the placed file
// carries them from its first moment. For the rsync transport the checksum is also taken here, from the
// received file (I1 on the PPU side only: rsync's own transfer checks cover the wire).
import { open } from 'node:fs/promises';
import { constants } from 'node:fs';
import { checksumOfHandle } from '../common/checksum.js';
import { writeProvenance, type Namespace } from '../common/provenance.js';
import type { Logger } from '../common/logger.js';
import type { Shift } from './shift.js';
import { DirFd } from '../common/dir-fd.js';
import * as path from 'node:path';

export class StagedProvenance {
  /** The namespace that took the attributes last: tried first (tmpfs before Linux 6.6 refuses `user`). */
  #namespace: Namespace = 'user';
  #saidRefused = false;
  #saidFailed = false;
  #saidChown = false;
  /** Staged files said unreadable, each said once until it is read (a file retried every run must not flood the log). */
  #saidUnreadable = new Set<string>();

  constructor(readonly detector: string, private readonly log: Logger) {}

  /**
   * Writes checksum (hex), shift and detector onto the open staged file `fd`. Never throws: a file system that
   * takes no attributes is said once (the checksum still reaches grimseld's journal), any other failure once
   * per process with the file; the file is placed all the same (G12).
   */
  write(fd: number, checksum: string, shift: Pick<Shift, 'usertime' | 'uid' | 'gid'>, rel: string): void {
    let ns: Namespace | undefined;
    try {
      ns = writeProvenance(fd, { checksum, shift: { startUs: shift.usertime, uid: shift.uid, gid: shift.gid }, detector: this.detector }, this.#namespace);
    } catch (e) {
      if (!this.#saidFailed) {
        this.#saidFailed = true;
        this.log.error({ detector: this.detector, file: rel, err: (e as Error).message },
          'cannot write the provenance attributes (ppu.*) onto a staged file; it is placed without them (said once)');
      }
      return;
    }
    if (ns) {
      this.#namespace = ns;
    } else if (!this.#saidRefused) {
      this.#saidRefused = true;
      this.log.warn({ detector: this.detector, file: rel }, "the target's file system takes no extended attributes: files are placed " +
        'without ppu.checksum/shift/detector; their checksums reach grimseld all the same (said once)');
    }
  }

  /**
   * Reads the staged file `rel` below `staging` whole, gives it the shift's owner, writes its provenance onto it and returns its checksum
   * (hex); undefined when it is gone (the loop finds it so) or cannot be read (said once; placed without one).
   * Opened through its directory, so that any depth is read.
   */
  async checksumOf(staging: string, shift: Pick<Shift, 'usertime' | 'uid' | 'gid'>, rel: string): Promise<string | undefined> {
    let fh;
    try {
      const held = DirFd.openParent(staging, rel);
      if (!held) return undefined;
      // Staging is root's alone: nothing in it is a user's; O_NOFOLLOW all the same.
      fh = await DirFd.with(held.dir, (d) => open(d.at(held.name), constants.O_RDONLY | constants.O_NOFOLLOW));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.#unreadable(staging, rel, e as Error);
      return undefined;
    }
    try {
      const hex = await checksumOfHandle(fh);
      this.write(fh.fd, hex, shift, rel);
      // The shift's owner, through the open file: one an earlier furkad left in staging (killed between the removal
      // and the placing, its shift not resumed) was rsync's for that shift's user, and went into this shift's
      // directory still theirs (found by hostile tester h11).
      const st = await fh.stat();
      if (st.uid !== shift.uid || st.gid !== shift.gid) {
        await fh.chown(shift.uid, shift.gid).catch((e: Error) => {
          if (!this.#saidChown) this.log.error({ detector: this.detector, file: rel, err: e.message }, "cannot give a staged file its shift's owner; it is placed as it is (said once)");
          this.#saidChown = true;
        });
      }
      this.#saidUnreadable.delete(rel);
      return hex;
    } catch (e) {
      this.#unreadable(staging, rel, e as Error);
      return undefined;
    } finally {
      await fh.close();
    }
  }

  #unreadable(staging: string, rel: string, e: Error): void {
    if (this.#saidUnreadable.has(rel)) return;
    if (this.#saidUnreadable.size >= 1000) this.#saidUnreadable.clear();
    this.#saidUnreadable.add(rel);
    this.log.error({ detector: this.detector, file: rel, staging: path.basename(staging), err: e.message }, 'cannot read a received file for its checksum (said once per file)');
  }
}
