// RFC 4180 CSV (and TSV), streamed: quoted fields may hold delimiters, doubled quotes and line
// breaks; CRLF or LF ends a record. Records are yielded with the line they start on, so a ragged row
// or an unclosed quote is reported where the user will look for it. A quote RFC 4180 does not allow
// (inside an unquoted field, or text after a closing quote) is kept as text but flagged with its
// line: such a row was almost always meant differently (an unbalanced quote that swallowed or split
// fields), and the reader reports it instead of training on a guess.

export interface CsvRecord {
  fields: string[];
  /** 1-based line on which the record starts. */
  line: number;
  /** Set when the record ran past the size limit; its fields are then incomplete. */
  tooLong?: number;
  /** Set when the file ended inside a quoted field. */
  unterminated?: boolean;
  /** The line of the first misplaced quote: in an unquoted field (`5" pipe`), or followed by more
   *  text after it closed a quoted field (`"a"b`). */
  badQuote?: number;
}

const enum S {
  FieldStart,
  Unquoted,
  Quoted,
  QuoteInQuoted,
}

export async function* csvRecords(chunks: AsyncIterable<string>, delimiter: string, maxChars: number): AsyncGenerator<CsvRecord> {
  const d = delimiter.charCodeAt(0);
  let state = S.FieldStart;
  let fields: string[] = [];
  let field = '';
  let size = 0;
  let line = 1; // current physical line
  let recordLine = 1;
  let tooLong = 0;
  let pendingCR = false;
  let badQuote = 0;
  let quotedInRecord = false; // `""` alone on a line is a record with one empty field, not a blank line

  const endField = () => {
    if (!tooLong) fields.push(field);
    field = '';
  };
  function* endRecord(): Generator<CsvRecord> {
    endField();
    // A blank line is one empty field: skip it rather than call it a ragged row.
    if (!(fields.length === 1 && fields[0] === '' && !tooLong && !quotedInRecord)) {
      yield tooLong ? { fields, line: recordLine, tooLong: size } : badQuote ? { fields, line: recordLine, badQuote } : { fields, line: recordLine };
    }
    fields = [];
    size = 0;
    tooLong = 0;
    badQuote = 0;
    quotedInRecord = false;
    state = S.FieldStart;
    recordLine = line;
  }

  for await (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (pendingCR) {
        pendingCR = false;
        if (c === 0x0a) continue; // the LF of a CRLF that already ended the record
      }
      if (++size > maxChars && !tooLong) {
        tooLong = size;
        fields = [];
        field = '';
      }
      switch (state) {
        case S.Quoted:
          if (c === 0x22) state = S.QuoteInQuoted;
          else {
            if (c === 0x0a) line++;
            if (!tooLong) field += chunk[i];
          }
          continue;
        case S.QuoteInQuoted:
          if (c === 0x22) {
            if (!tooLong) field += '"';
            state = S.Quoted;
            continue;
          }
          // Closing quote: what follows must be a delimiter or a line end; anything else is kept, flagged.
          if (c !== d && c !== 0x0a && c !== 0x0d && !badQuote) badQuote = line;
          state = S.Unquoted;
          break;
        case S.FieldStart:
          if (c === 0x22) {
            state = S.Quoted;
            quotedInRecord = true;
            continue;
          }
          state = S.Unquoted;
          break;
        case S.Unquoted:
          if (c === 0x22 && !badQuote) badQuote = line;
          break;
      }
      // Unquoted context.
      if (c === d) {
        endField();
        state = S.FieldStart;
      } else if (c === 0x0a || c === 0x0d) {
        line++;
        if (c === 0x0d) pendingCR = true;
        yield* endRecord();
      } else if (!tooLong) field += chunk[i];
    }
  }
  if (state === S.Quoted) {
    endField();
    yield { fields, line: recordLine, unterminated: true };
    return;
  }
  if (state !== S.FieldStart || fields.length > 0 || field.length > 0) yield* endRecord();
}

/** Picks the delimiter of a CSV-like file from its first line: the candidate that occurs most often
 *  outside quotes. Defaults to a comma. */
export function sniffDelimiter(firstLine: string): string {
  const counts = new Map<string, number>([[',', 0], ['\t', 0], [';', 0], ['|', 0]]);
  let quoted = false;
  for (const ch of firstLine) {
    if (ch === '"') quoted = !quoted;
    else if (!quoted && counts.has(ch)) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  }
  let best = ',';
  let bestN = 0;
  for (const [ch, k] of counts) {
    if (k > bestN) {
      best = ch;
      bestN = k;
    }
  }
  return best;
}
