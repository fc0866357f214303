#!/usr/bin/env node
// node --expose-gc --single-threaded-gc --no-concurrent-array-buffer-sweeping scripts/data-memory.mjs ROWS:
// live memory and peak RSS of `webtune data`'s pipeline over ROWS streamed rows (src/node/data-memory.ts).
import { register } from 'tsx/esm/api';

register();
const { dataMemory } = await import('../src/node/data-memory.ts');
console.log(JSON.stringify(await dataMemory(Number(process.argv[2] ?? 20000))));
