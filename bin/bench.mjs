#!/usr/bin/env node
// `npm run bench`: kernel timings, the counted work of a training step and a decoded token, and
// dataset preparation throughput, as JSON (src/node/bench.ts).
import { register } from 'tsx/esm/api';

register();
await import('../scripts/wgsl-loader.mjs');
await import('../src/node/bench.ts');
