// Every kernel family's bench cases, in the order `npm run bench` runs them.
import type { BenchFamily } from './bench-case.ts';
import { benches as rmsnorm } from './rmsnorm.bench.ts';
import { benches as attention } from './attention.bench.ts';
import { benches as matmul } from './matmul.bench.ts';
import { benches as matvec } from './matvec.bench.ts';
import { benches as nf4 } from './nf4.bench.ts';
import { benches as pointwise } from './pointwise.bench.ts';
import { benches as lora } from './lora.bench.ts';
import { benches as adamw } from './adamw.bench.ts';

export const families: BenchFamily[] = [matmul, matvec, nf4, rmsnorm, attention, pointwise, lora, adamw];
