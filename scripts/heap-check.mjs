#!/usr/bin/env node
// node --expose-gc --single-threaded-gc --no-concurrent-array-buffer-sweeping scripts/heap-check.mjs: JS memory held while loading a ~135 MB model (src/node/heap-check.ts).
import { register } from 'tsx/esm/api';

register();
await import('./wgsl-loader.mjs');
const { heapCheck } = await import('../src/node/heap-check.ts');
console.log(JSON.stringify(await heapCheck()));
