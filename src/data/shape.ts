// Dataset shapes: which fields a row has and what they mean. One table lists every shape with its
// required and optional fields; detection, the column mapping, validation and error messages all
// read it, so adding a shape is one entry here plus its case in toExample().
import { DatasetError } from '../errors.ts';
import type { ChatMessage, Problem, SourceRecord } from './types.ts';

export type ShapeName = 'seed' | 'alpaca' | 'prompt-completion' | 'text' | 'messages' | 'sharegpt';

/** A logical field of a shape (the names the shape table uses). */
export type Field = 'instruction' | 'input' | 'response' | 'output' | 'prompt' | 'completion' | 'text' | 'messages' | 'conversations';

/** Logical field → the column that holds it in the user's file, e.g. {instruction: 'question'}. */
export type ColumnMapping = Partial<Record<Field, string>>;

interface ShapeSpec {
  required: Field[];
  optional: Field[];
  what: string;
}

// Detection tries these in order: the most specific shapes first, {text} last.
export const SHAPES: Record<ShapeName, ShapeSpec> = {
  messages: { required: ['messages'], optional: [], what: 'chat: {messages: [{role, content}]}' },
  sharegpt: { required: ['conversations'], optional: [], what: 'ShareGPT: {conversations: [{from, value}]}' },
  'prompt-completion': { required: ['prompt', 'completion'], optional: [], what: 'prompt/completion (strings or message lists)' },
  alpaca: { required: ['instruction', 'output'], optional: ['input'], what: 'Alpaca: {instruction, input, output}' },
  seed: { required: ['instruction', 'response'], optional: [], what: 'instruction/response' },
  text: { required: ['text'], optional: [], what: 'plain text: {text}' },
};

export type Example =
  | { kind: 'instruction'; instruction: string; input: string; response: string }
  | { kind: 'prompt-completion'; prompt: string; completion: string }
  | { kind: 'prompt-completion-chat'; prompt: ChatMessage[]; completion: ChatMessage[] }
  | { kind: 'text'; text: string }
  | { kind: 'chat'; messages: ChatMessage[] };

export interface ResolvedShape {
  shape: ShapeName;
  /** Logical field → actual key in the rows. */
  columns: Partial<Record<Field, string>>;
}

/** Keys match without regard to case or surrounding spaces ("Instruction", " response"). */
function findKey(keys: Iterable<string>, want: string): string | undefined {
  const w = want.trim().toLowerCase();
  for (const k of keys) if (k.trim().toLowerCase() === w) return k;
  return undefined;
}

function resolve(shape: ShapeName, keys: Set<string>, mapping: ColumnMapping): ResolvedShape | null {
  const spec = SHAPES[shape];
  const columns: Partial<Record<Field, string>> = {};
  for (const f of [...spec.required, ...spec.optional]) {
    const k = findKey(keys, mapping[f] ?? f);
    if (k !== undefined) columns[f] = k;
    else if (spec.required.includes(f)) return null;
  }
  return { shape, columns };
}

/** Picks the shape from the first rows (union of their keys). A mapping renames columns; `force`
 *  skips detection. Throws, naming the columns found and the shapes expected, when nothing fits. */
export function detectShape(sample: SourceRecord[], file: string, mapping: ColumnMapping = {}, force?: ShapeName): ResolvedShape {
  const keys = new Set<string>();
  for (const r of sample) if (isObject(r.value)) for (const k of Object.keys(r.value)) keys.add(k);
  if (sample.length > 0 && keys.size === 0) {
    const r = sample[0];
    throw new DatasetError(
      `${file}${where(r)}: rows are ${describe(r.value)}, not objects with named fields.`,
      'Each example must be an object such as {"instruction": "...", "response": "..."}.',
      { file, line: r.line, row: r.row },
    );
  }
  const order = force ? [force] : (Object.keys(SHAPES) as ShapeName[]);
  for (const s of order) {
    const r = resolve(s, keys, mapping);
    if (r) return r;
  }
  const found = [...keys];
  const expected = order.map((s) => `${SHAPES[s].what}`);
  throw new DatasetError(
    `${file}: no known dataset shape fits the columns found (${found.join(', ')}). Expected one of: ${expected.join('; ')}.`,
    'Rename the columns, or map them, e.g. --map instruction=question --map response=answer.',
    { file, found, expected: order.map((s) => SHAPES[s].required.map((f) => mapping[f] ?? f)) },
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'arrays';
  if (v === null) return 'null';
  return `${typeof v} values`;
}

function where(r: { row: number; line?: number }): string {
  return r.line !== undefined ? ` line ${r.line} (row ${r.row})` : ` row ${r.row}`;
}

/** A field as text. Numbers and booleans (a CSV of numbers, a Parquet int column) are accepted. */
function asText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return null;
}

// TRL's maybe_convert_to_chatml maps ShareGPT's speakers to ChatML roles the same way.
const SHAREGPT_ROLES: Record<string, string> = { human: 'user', user: 'user', gpt: 'assistant', assistant: 'assistant', system: 'system', chatgpt: 'assistant', bing: 'assistant', bard: 'assistant', tool: 'tool', function_call: 'assistant', observation: 'tool' };
const CHAT_ROLES = new Set(['system', 'user', 'assistant', 'tool', 'developer']);

/** A message list from either convention; returns a reason string when malformed. */
function messagesOf(v: unknown, sharegpt: boolean): ChatMessage[] | string {
  if (!Array.isArray(v)) return `expected a list of messages, found ${describe(v)}`;
  if (v.length === 0) return 'the message list is empty';
  const out: ChatMessage[] = [];
  for (let k = 0; k < v.length; k++) {
    const m = v[k];
    if (!isObject(m)) return `message ${k + 1} is ${describe(m)}, not an object`;
    const rawRole = m.role ?? m.from;
    const content = asText(m.content ?? m.value);
    if (typeof rawRole !== 'string') return `message ${k + 1} has no "${sharegpt ? 'from' : 'role'}" (fields: ${Object.keys(m).join(', ')})`;
    if (content === null) return `message ${k + 1} has no text "${sharegpt ? 'value' : 'content'}" (fields: ${Object.keys(m).join(', ')})`;
    const role = 'from' in m && !('role' in m) ? SHAREGPT_ROLES[rawRole.toLowerCase()] : CHAT_ROLES.has(rawRole) ? rawRole : undefined;
    if (role === undefined) return `message ${k + 1} has the unknown role "${rawRole}"`;
    out.push({ role, content });
  }
  return out;
}

/** One row as an Example, or the Problem that stops it. */
export function toExample(r: SourceRecord, resolved: ResolvedShape, file: string): Example | Problem {
  const spec = SHAPES[resolved.shape];
  const expected = spec.required.map((f) => resolved.columns[f] ?? f);
  if (!isObject(r.value)) {
    return { kind: 'not-an-object', file, row: r.row, line: r.line, message: `${file}${where(r)}: expected an object with ${expected.join(', ')}, found ${describe(r.value)}.`, expected };
  }
  const row = r.value;
  const found = Object.keys(row);
  const missing = spec.required.filter((f) => {
    const v = row[resolved.columns[f] ?? f];
    return v === undefined || v === null;
  });
  if (missing.length > 0) {
    return {
      kind: 'missing-fields',
      file,
      row: r.row,
      line: r.line,
      found,
      expected,
      message: `${file}${where(r)}: missing ${missing.map((f) => `"${resolved.columns[f] ?? f}"`).join(', ')}; the row has ${found.length ? found.join(', ') : 'no fields'}, the ${resolved.shape} shape needs ${expected.join(', ')}.`,
    };
  }
  const get = (f: Field) => row[resolved.columns[f] ?? f];
  const bad = (kind: Problem['kind'], what: string): Problem => ({ kind, file, row: r.row, line: r.line, found, expected, message: `${file}${where(r)}: ${what}.` });
  const text = (f: Field, allowEmpty = false): string | Problem => {
    const s = asText(get(f));
    if (s === null) return bad('wrong-type', `"${resolved.columns[f] ?? f}" should be text, found ${describe(get(f))}`);
    if (!allowEmpty && s.trim().length === 0) return bad('empty-field', `"${resolved.columns[f] ?? f}" is empty`);
    return s;
  };
  switch (resolved.shape) {
    case 'seed':
    case 'alpaca': {
      const instruction = text('instruction');
      if (typeof instruction !== 'string') return instruction;
      const response = text(resolved.shape === 'seed' ? 'response' : 'output');
      if (typeof response !== 'string') return response;
      let input = '';
      if (resolved.columns.input !== undefined && get('input') !== undefined && get('input') !== null) {
        const i = text('input', true);
        if (typeof i !== 'string') return i;
        input = i;
      }
      return { kind: 'instruction', instruction, input, response };
    }
    case 'prompt-completion': {
      const p = get('prompt');
      const c = get('completion');
      if (Array.isArray(p) || Array.isArray(c)) {
        const pm = messagesOf(p, false);
        if (typeof pm === 'string') return bad('wrong-type', `"prompt": ${pm}`);
        const cm = messagesOf(c, false);
        if (typeof cm === 'string') return bad('wrong-type', `"completion": ${cm}`);
        return { kind: 'prompt-completion-chat', prompt: pm, completion: cm };
      }
      const prompt = text('prompt', true);
      if (typeof prompt !== 'string') return prompt;
      const completion = text('completion');
      if (typeof completion !== 'string') return completion;
      return { kind: 'prompt-completion', prompt, completion };
    }
    case 'text': {
      const t = text('text');
      return typeof t === 'string' ? { kind: 'text', text: t } : t;
    }
    case 'messages':
    case 'sharegpt': {
      const m = messagesOf(get(resolved.shape === 'messages' ? 'messages' : 'conversations'), resolved.shape === 'sharegpt');
      if (typeof m === 'string') return bad('bad-role', m);
      if (!m.some((x) => x.role === 'assistant')) return bad('bad-role', 'the conversation has no assistant message, so there is nothing to train on');
      return { kind: 'chat', messages: m };
    }
  }
}
