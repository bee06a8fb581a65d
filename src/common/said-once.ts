// What was said, by key (a storage, a file on a storage): said once per key, or again only after a pause, so that a
// failure tried again and again is one message, not one per try (G10).
import { monotonicMs } from './monotonic.js';

export class SaidOnce {
  /** When each key was last said (monotonicMs(); 0 where it is never said again). */
  readonly #said = new Map<string, number>();

  /** `repeatMs`: said again once this long has passed while it still holds (default: never again until forgotten). */
  constructor(private readonly repeatMs = Infinity) {}

  /** Whether to say it for `key` now: the first time, or the first time after repeatMs; noted as said if so. */
  due(key: string): boolean {
    const now = this.repeatMs === Infinity ? 0 : monotonicMs();
    const said = this.#said.get(key);
    if (said !== undefined && now - said < this.repeatMs) return false;
    this.#said.set(key, now);
    return true;
  }

  /** It is over for `key` (the file copied, the storage mounted again): said at once the next time. Whether it had been said. */
  forget(key: string): boolean {
    return this.#said.delete(key);
  }
}
