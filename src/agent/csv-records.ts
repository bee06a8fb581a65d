// inotifywait's --csv output as records of raw byte fields: names are bytes to the kernel, not text.
const COMMA = 0x2c;
const QUOTE = 0x22;
const NEWLINE = 0x0a;

/**
 * Splits a byte stream into CSV records (RFC 4180 quoting, as inotifywait writes it): a field holding a comma,
 * a quote, a newline or a leading/trailing space is quoted and its quotes doubled. Fields stay Buffers, so a
 * name that is not valid UTF-8 reaches the caller byte for byte.
 */
export class CsvRecords {
  #pending: Buffer = Buffer.alloc(0);
  /** Where the scan for the end of the current record goes on, and whether that point is inside quotes. */
  #scanned = 0;
  #inQuotes = false;

  /** Adds a chunk; returns the records it completed. */
  push(chunk: Buffer): Buffer[][] {
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
    const records: Buffer[][] = [];
    let start = 0;
    for (let i = this.#scanned; i < this.#pending.length; i++) {
      const c = this.#pending[i];
      if (c === QUOTE) this.#inQuotes = !this.#inQuotes;
      else if (c === NEWLINE && !this.#inQuotes) {
        records.push(parseRecord(this.#pending.subarray(start, i)));
        start = i + 1;
      }
    }
    this.#pending = this.#pending.subarray(start);
    this.#scanned = this.#pending.length;
    return records;
  }
}

/** One record without its newline: fields split at commas outside quotes, quotes removed, "" made ". */
export function parseRecord(line: Buffer): Buffer[] {
  const fields: Buffer[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === QUOTE) {
      const bytes: number[] = [];
      i++;
      while (i < line.length) {
        if (line[i] === QUOTE) {
          if (line[i + 1] === QUOTE) { bytes.push(QUOTE); i += 2; continue; }
          i++;
          break;
        }
        bytes.push(line[i]!);
        i++;
      }
      fields.push(Buffer.from(bytes));
      // Anything between the closing quote and the comma is not valid CSV; it is skipped.
      while (i < line.length && line[i] !== COMMA) i++;
    } else {
      let end = line.indexOf(COMMA, i);
      if (end < 0) end = line.length;
      fields.push(line.subarray(i, end));
      i = end;
    }
    if (i >= line.length) return fields;
    i++; // the comma
    if (i === line.length) { fields.push(Buffer.alloc(0)); return fields; }
  }
}
