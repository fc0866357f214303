#!/usr/bin/env node
// node --expose-gc --single-threaded-gc --no-concurrent-array-buffer-sweeping scripts/merge-heap-check.mjs: JS memory held while merging into a ~135 MB model (src/node/merge-heap-check.ts).
import { register } from 'tsx/esm/api';

register();
await import('./wgsl-loader.mjs');
const { mergeHeapCheck } = await import('../src/node/merge-heap-check.ts');
console.log(JSON.stringify(await mergeHeapCheck()));
