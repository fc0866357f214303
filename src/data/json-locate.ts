// JSON.parse says *that* a document is malformed but browsers disagree on *where* (V8 gives a
// position, Firefox a line and column, Safari neither). This scanner re-reads a document that
// JSON.parse rejected and finds the first offending character itself, so every browser gets the same
// "line 12, column 7" message. It also finds where each element of a top-level array starts, so a bad
// row in a JSON array can be reported by line. It only validates; values still come from JSON.parse.
// Iterative, with an explicit stack: a hostile "[[[[..." cannot overflow the call stack.

export interface JsonFault {
  offset: number;
  message: string;
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);

/** The first syntax error in `text`, or null if it is valid JSON. `onTopElement` receives the offset
 *  of each element of a top-level array. */
export function findJsonFault(text: string, onTopElement?: (offset: number) => void): JsonFault | null {
  let i = 0;
  const n = text.length;
  // Stack of open containers: '[' or '{'. `expect` is what may come next in the innermost one.
  const stack: number[] = [];
  const skipWs = () => {
    while (i < n && WS.has(text.charCodeAt(i))) i++;
  };
  const fault = (message: string): JsonFault => ({ offset: Math.min(i, n), message: i >= n ? 'unexpected end of input' : message });

  const scanString = (): JsonFault | null => {
    i++; // opening quote
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return null;
      }
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
            i++;
            return fault('bad \\u escape in a string');
          }
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else {
          i++;
          return fault(`bad escape "\\${e ?? ''}" in a string`);
        }
        continue;
      }
      if (c < 0x20) return fault(c === 0x0a ? 'string not closed before the end of the line' : 'control character inside a string');
      i++;
    }
    return fault('string not closed');
  };

  const scanScalar = (): JsonFault | null => {
    const c = text[i];
    if (c === '"') return scanString();
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (m && m[0].length > 0 && (c === '-' || (c >= '0' && c <= '9'))) {
      i += m[0].length;
      return null;
    }
    for (const lit of ['true', 'false', 'null']) {
      if (text.startsWith(lit, i)) {
        i += lit.length;
        return null;
      }
    }
    return fault(`unexpected character ${JSON.stringify(c)}`);
  };

  // One loop, three states: a value is due, a property name is due, or a value just ended.
  let need: 'value' | 'key' | 'after' = 'value';
  let f: JsonFault | null = null;
  while (!f) {
    skipWs();
    if (need === 'value') {
      if (i >= n) return fault('');
      if (stack.length === 1 && stack[0] === 0x5b && onTopElement) onTopElement(i);
      const c = text.charCodeAt(i);
      if (c === 0x5b || c === 0x7b) {
        stack.push(c);
        i++;
        skipWs();
        if (text.charCodeAt(i) === (c === 0x5b ? 0x5d : 0x7d)) {
          stack.pop();
          i++;
          need = 'after';
        } else need = c === 0x7b ? 'key' : 'value';
      } else {
        f = scanScalar();
        need = 'after';
      }
    } else if (need === 'key') {
      if (text[i] !== '"') return fault(`expected a quoted property name, found ${JSON.stringify(text[i])}`);
      f = scanString();
      if (f) break;
      skipWs();
      if (text[i] !== ':') return fault(`expected ":" after a property name, found ${JSON.stringify(text[i])}`);
      i++;
      need = 'value';
    } else {
      if (stack.length === 0) break;
      const top = stack[stack.length - 1];
      const c = text[i];
      if (c === ',') {
        i++;
        skipWs();
        // A trailing comma ("[1,2,]") is the most common hand-edit mistake; say so.
        if (text[i] === ']' || text[i] === '}') return fault('trailing comma before the closing bracket');
        need = top === 0x7b ? 'key' : 'value';
      } else if ((c === ']' && top === 0x5b) || (c === '}' && top === 0x7b)) {
        stack.pop();
        i++;
      } else return fault(`expected "," or "${top === 0x5b ? ']' : '}'}", found ${JSON.stringify(c)}`);
    }
  }
  if (f) return f;
  skipWs();
  if (i < n) return fault(`unexpected ${JSON.stringify(text[i])} after the end of the JSON value`);
  return null;
}

/** 1-based line and column of a character offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let last = -1;
  for (let j = text.indexOf('\n'); j >= 0 && j < offset; j = text.indexOf('\n', j + 1)) {
    line++;
    last = j;
  }
  return { line, column: offset - last };
}

/** The offending line cut to about 60 characters around the column, with a caret under it. */
export function snippetAt(lineText: string, column: number): string {
  const from = Math.max(0, column - 1 - 30);
  const to = Math.min(lineText.length, column - 1 + 30);
  const cut = (from > 0 ? '…' : '') + lineText.slice(from, to) + (to < lineText.length ? '…' : '');
  const caret = ' '.repeat(column - 1 - from + (from > 0 ? 1 : 0)) + '^';
  return `${cut}\n${caret}`;
}

export function lineAt(text: string, line: number): string {
  let start = 0;
  for (let l = 1; l < line; l++) {
    const j = text.indexOf('\n', start);
    if (j < 0) return '';
    start = j + 1;
  }
  const end = text.indexOf('\n', start);
  return text.slice(start, end < 0 ? text.length : end).replace(/\r$/, '');
}
