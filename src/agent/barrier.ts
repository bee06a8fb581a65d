// Barriers (A5): a mark furkad asks for at a shift change, put into the kernel's own stream of events, so that
// every file completed before it is announced before the agent's `barrier` line (docs/agent-protocol.md).
//
// The mark is an empty file in the root, created and closed by the agent. inotify queues all of one instance's
// events in one order, and the agent's single inotifywait watches the whole tree: the mark's close comes after
// the close (or rename) of every file completed before it that inotifywait watched. When the agent reads it, it
// has announced those. What no event stands for is looked for before the barrier line (catalog.ts): the files
// of new directories not yet looked into, of directories whose watch is not known to be in place (inotifywait
// gives one up when a file in it is renamed while it sets the watch up), and names made by link(2).

/** Names in the root starting with this are the agent's barrier marks: hidden (never announced), empty, short-lived. */
export const BARRIER_PREFIX = '.furka-agent-barrier-';

const ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether `id` may name a barrier: letters, digits, '-' and '_' (base64url), at most 64. */
export function validBarrierId(id: string): boolean {
  return ID.test(id);
}

/** The mark's name in the root for barrier `id` (a valid one). */
export function barrierName(id: string): string {
  return `${BARRIER_PREFIX}${id}`;
}

/** The barrier id a root-relative path stands for, if it is a mark in the root itself; undefined otherwise. */
export function barrierOf(rel: Buffer): string | undefined {
  if (rel.includes(0x2f)) return undefined;
  const name = rel.toString('latin1');
  if (!name.startsWith(BARRIER_PREFIX)) return undefined;
  const id = name.slice(BARRIER_PREFIX.length);
  return validBarrierId(id) ? id : undefined;
}
