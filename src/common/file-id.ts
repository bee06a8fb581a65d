// The ids furka-agent gives files, as both sides read them (docs/agent-protocol.md).

/**
 * The file's own part of an announced id: INO:SIZE:MTIME_NS. The catalog adds `:N` to the id of a file
 * rewritten in place after its announcement with nothing of those changed (the same size, within one tick of
 * the kernel's coarse clock): the file system cannot tell the versions apart, the catalog's count can.
 */
export function baseId(id: string): string {
  const third = id.indexOf(':', id.indexOf(':', id.indexOf(':') + 1) + 1);
  return third < 0 ? id : id.slice(0, third);
}
