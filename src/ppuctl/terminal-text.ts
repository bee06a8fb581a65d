// Text from the daemons that ppuctl prints to a terminal: file names and reasons that a detector's writer or a
// shift's user chose. A name holding ESC sequences (clear the screen, move the cursor, hide text) would otherwise
// redraw an operator's `ppuctl status` into whatever its maker wanted ("all OK") (S7). `--json` is escaped by
// JSON itself.

/**
 * C0 and C1 control characters (newline and tab included: a value is one field of one line), DEL, and the
 * Unicode controls that reorder or break lines (bidirectional overrides and isolates, the line and paragraph
 * separators).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with each character a terminal would act on shown as `\xHH` or `\uHHHH` instead. */
export function visible(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
