// `npm run bench`: time every kernel at stated shapes and print one JSON document, so the same
// command on any GPU gives comparable figures. Real LLM shapes on a real GPU ("full"); tiny shapes
// on SwiftShader, where the numbers only show that the harness works (it is a correctness device).
//   npm run bench [-- --full | --small] [--filter SUBSTRING] [--min-ms 300]
import { Gpu } from '../gpu/runtime.ts';
import type { BenchCase, BenchFamily } from '../kernels/bench-case.ts';
import { families } from '../kernels/benches.ts';
import { benchDataPrep } from '../data/bench.ts';
import { modelBench } from './model-bench.ts';

interface Args {
  mode: 'full' | 'small' | 'auto';
  filter: string;
  minMs: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { mode: 'auto', filter: '', minMs: 300 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--full') a.mode = 'full';
    else if (k === '--small') a.mode = 'small';
    else if (k === '--filter') a.filter = argv[++i] ?? '';
    else if (k === '--min-ms') a.minMs = Number(argv[++i]);
    else throw new Error(`bench: unknown argument ${k} (use --full, --small, --filter S, --min-ms N)`);
  }
  return a;
}

/** Runs `run` in batches until minMs of GPU-bound wall time has passed; returns ms per run. */
async function time(gpu: Gpu, run: () => void, minMs: number): Promise<{ ms: number; runs: number }> {
  run(); // warm-up: compiles pipelines, creates bind groups
  await gpu.sync();
  let runs = 0;
  let batch = 1;
  const t0 = performance.now();
  for (;;) {
    for (let i = 0; i < batch; i++) run();
    await gpu.sync();
    runs += batch;
    const el = performance.now() - t0;
    if (el >= minMs) return { ms: el / runs, runs };
    batch = Math.min(batch * 2, 256);
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const gpu = await Gpu.create();
  const info = gpu.adapterInfo;
  const software = /swiftshader|llvmpipe|lavapipe/i.test(`${info.vendor} ${info.architecture} ${info.description}`);
  const full = args.mode === 'auto' ? !software : args.mode === 'full';
  const cases: BenchCase[] = families.flatMap((f: BenchFamily) => f(full)).filter((c) => c.kernel.includes(args.filter));
  const results = [];
  for (const c of cases) {
    const before = gpu.allocatedBytes;
    const run = c.setup(gpu);
    await gpu.check();
    const d0 = gpu.counters.dispatches;
    run();
    const dispatches = gpu.counters.dispatches - d0;
    const { ms, runs } = await time(gpu, run, args.minMs);
    results.push({
      kernel: c.kernel,
      shape: c.shape,
      ms: Number(ms.toFixed(4)),
      gflops: c.flops ? Number((c.flops / ms / 1e6).toFixed(2)) : null,
      gbps: c.bytes ? Number((c.bytes / ms / 1e6).toFixed(2)) : null,
      dispatches,
      runs,
      gpuBytes: gpu.allocatedBytes - before,
    });
    process.stderr.write(`${c.kernel} ${JSON.stringify(c.shape)} ${ms.toFixed(3)} ms\n`);
  }
  const doc = {
    adapter: info,
    software,
    mode: full ? 'full' : 'small',
    features: gpu.features,
    adapterFeatures: gpu.adapterFeatures,
    limits: gpu.requestedLimits,
    kernels: results,
    // What a Llama-3.2-1B training step (512 tokens, LoRA r 8 on q_proj and v_proj) and a decoded
    // token ask of the GPU, counted on a device that only counts (the same on every machine), and
    // the CPU time of sampling one token over its 128,256-token vocabulary.
    count: args.filter && !'count'.includes(args.filter) ? undefined : await modelBench({
      shape: 'llama-3.2-1b', seqLen: 512, batch: 1, steps: 1, quant: 'nf4', rank: 8, targets: ['q_proj', 'v_proj'],
      checkpointing: false, planOnly: false, count: true,
    }),
    // Dataset preparation (read, detect, template, tokenize with the Llama 3 tokenizer) on the CPU.
    data: args.filter && !'data'.includes(args.filter) ? undefined : await benchDataPrep(),
  };
  console.log(JSON.stringify(doc, null, 2));
  gpu.destroy();
}

main().catch((e) => {
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : e);
  process.exit(1);
});
