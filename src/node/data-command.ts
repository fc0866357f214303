// `webtune data --data FILE --model DIR [--template NAME] [--seq-len N] [--json]`: runs the data
// pipeline exactly as training would and prints what the model will see: the detected format and
// shape, statistics, the first rendered examples with trained tokens marked, and every problem.
// Exit codes: 0 usable and clean (or bad rows skipped on request), 1 bad rows found, 2 error.
import { openAsBlob } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { checkTrainedTokens, reportDataset, type PrepareOptions } from '../data/pipeline.ts';
import { SHAPES, type ColumnMapping, type Field, type ShapeName } from '../data/shape.ts';
import { TEMPLATE_NAMES, type TemplateName } from '../data/templates.ts';
import { loadTokenizerFromText, type LoadedTokenizer } from '../data/tokenizer.ts';
import { ModelFileError, UsageError, WebtuneError } from '../errors.ts';
import { checkReadableFile } from './preflight.ts';

const USAGE = `usage: webtune data --data FILE --model DIR [--template ${TEMPLATE_NAMES.join('|')}] [--seq-len N] [--json]
       [--shape ${Object.keys(SHAPES).join('|')}] [--map FIELD=COLUMN]... [--skip-bad-rows] [--packing]
       [--validation F] [--examples N] [--encoding latin1|utf-16le|...]`;

interface Args {
  data: string;
  model: string;
  json: boolean;
  examples: number;
  opts: PrepareOptions;
}

function parseArgs(argv: string[]): Args {
  const mapping: ColumnMapping = {};
  const opts: PrepareOptions = { mapping };
  let data = '';
  let model = '';
  let json = false;
  let examples = 3;
  const value = (i: number, flag: string): string => {
    const v = argv[i];
    if (v === undefined || v.startsWith('--')) throw new UsageError(`${flag} needs a value.`, USAGE, { field: flag });
    return v;
  };
  const number = (s: string, flag: string, min: number): number => {
    const n = Number(s);
    if (!Number.isFinite(n) || n < min) throw new UsageError(`${flag} must be a number >= ${min}, got "${s}".`, USAGE, { field: flag });
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--data':
        data = value(++i, a);
        break;
      case '--model':
        model = value(++i, a);
        break;
      case '--json':
        json = true;
        break;
      case '--template': {
        const t = value(++i, a);
        if (!TEMPLATE_NAMES.includes(t as TemplateName)) throw new UsageError(`Unknown template "${t}".`, `Use one of: ${TEMPLATE_NAMES.join(', ')}.`, { field: a });
        opts.template = t as TemplateName;
        break;
      }
      case '--shape': {
        const s = value(++i, a);
        if (!(s in SHAPES)) throw new UsageError(`Unknown shape "${s}".`, `Use one of: ${Object.keys(SHAPES).join(', ')}.`, { field: a });
        opts.shape = s as ShapeName;
        break;
      }
      case '--map': {
        const m = /^(\w+)=(.+)$/.exec(value(++i, a));
        if (!m) throw new UsageError(`--map takes FIELD=COLUMN, e.g. instruction=question.`, USAGE, { field: a });
        mapping[m[1] as Field] = m[2];
        break;
      }
      case '--seq-len':
        opts.maxLength = Math.floor(number(value(++i, a), a, 2));
        break;
      case '--validation':
        opts.validation = number(value(++i, a), a, 0);
        break;
      case '--examples':
        examples = Math.floor(number(value(++i, a), a, 0));
        break;
      case '--encoding':
        opts.encoding = value(++i, a);
        break;
      case '--skip-bad-rows':
        opts.skipBadRows = true;
        break;
      case '--packing':
        opts.packing = true;
        break;
      case '--help':
      case '-h':
        throw new UsageError('webtune data: check a dataset against a model\'s tokenizer.', USAGE);
      default:
        throw new UsageError(`Unknown option "${a}".`, USAGE, { field: a });
    }
  }
  if (!data || !model) throw new UsageError('Both --data FILE and --model DIR are required.', USAGE, { field: data ? '--model' : '--data' });
  return { data, model, json, examples, opts };
}

/** Loads tokenizer.json and tokenizer_config.json from a model folder. */
export async function loadTokenizerFromDir(dir: string): Promise<LoadedTokenizer> {
  const read = async (file: string) => {
    try {
      return await readFile(join(dir, file), 'utf8');
    } catch {
      throw new ModelFileError(`${join(dir, file)} is missing or unreadable.`, 'The model folder needs tokenizer.json and tokenizer_config.json (as on the Hugging Face Hub).', { file });
    }
  };
  return loadTokenizerFromText(await read('tokenizer.json'), await read('tokenizer_config.json'), dir);
}

export async function dataCommand(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
    const tok = await loadTokenizerFromDir(args.model);
    await checkReadableFile(args.data, '--data');
    let blob: Blob;
    try {
      // openAsBlob reads lazily: a 200 MB file is streamed, never loaded whole.
      blob = await openAsBlob(args.data);
    } catch (e) {
      throw new UsageError(`Cannot open ${args.data}: ${e instanceof Error ? e.message : String(e)}`, 'Check the path given to --data.', { file: args.data });
    }
    const skip = args.opts.skipBadRows === true;
    // Always collect every problem so they can all be printed; whether they fail the run is decided here.
    // A report, not a prepared dataset: the examples are counted as they stream by, never kept, so a
    // file of millions of rows is checked in the memory of a few.
    const r = await reportDataset({ name: basename(args.data), data: blob }, tok, { ...args.opts, skipBadRows: true, previewCount: args.examples });
    const code = r.problems.length > 0 && !skip ? 1 : 0;
    if (args.json) {
      const { trainSequences, validationSequences, ...rest } = r;
      process.stdout.write(
        JSON.stringify({ ...rest, trainSequences, validationSequences, preview: r.preview.map(({ tokens, ...p }) => ({ ...p, tokens: tokens.map((t) => [t.id, t.trained ? 1 : 0]) })) }, null, 2) + '\n',
      );
      return code;
    }
    const s = r.stats;
    const out: string[] = [];
    out.push(`${r.file}: ${r.format} (${r.encoding}), shape ${r.shape} [${Object.entries(r.columns).map(([f, c]) => (f === c ? f : `${f}=${c}`)).join(', ')}], template ${r.template}`);
    out.push(`rows read ${r.rowsRead}, usable examples ${s.examples}, problems ${r.problems.length}`);
    out.push(`tokens ${s.tokens}, trained tokens ${s.trainedTokens}, truncated examples ${s.truncatedExamples} (seq-len ${r.seqLen})`);
    out.push(`length min ${s.minLength}, mean ${s.meanLength.toFixed(1)}, max ${s.maxLength}; sequences train ${r.trainSequences}, validation ${r.validationSequences}`);
    try {
      const lost = checkTrainedTokens(s, r.file, r.seqLen);
      if (lost) out.push(`warning: ${lost}`);
    } catch (e) {
      if (!(e instanceof WebtuneError)) throw e;
      out.push(`warning: ${e.message} ${e.hint}`); // `data` reports; `train` refuses
    }
    const peak = Math.max(1, ...s.histogram.map((b) => b.count));
    for (const b of s.histogram) out.push(`  ${`${b.from}-${b.to}`.padStart(11)} ${String(b.count).padStart(7)} ${'#'.repeat(Math.round((40 * b.count) / peak))}`);
    for (const p of r.preview) {
      out.push('', `--- row ${p.row}${p.line !== undefined ? ` (line ${p.line})` : ''}${p.truncated ? ', truncated' : ''}: rendered ---`, p.text);
      out.push(`--- ${p.tokens.length} tokens, trained ones in ⟦ ⟧ ---`, p.marked);
      out.push(`--- ids (* = trained) ---`, p.tokens.map((t) => `${t.id}${t.trained ? '*' : ''}`).join(' '));
    }
    if (r.problems.length > 0) {
      out.push('', `${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}${skip ? ' (rows skipped)' : ' (rerun with --skip-bad-rows to train on the rest)'}:`);
      for (const p of r.problems) out.push(`  ${p.message}${p.snippet ? `\n    ${p.snippet.replace('\n', '\n    ')}` : ''}`);
    }
    process.stdout.write(out.join('\n') + '\n');
    return code;
  } catch (e) {
    if (e instanceof WebtuneError) {
      process.stderr.write(`error: ${e.message}\nhint: ${e.hint}\n`);
      return 2;
    }
    throw e;
  }
}
