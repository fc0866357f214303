#!/usr/bin/env node
// The `webtune` command. The engine is TypeScript with WGSL imported as text (`?raw`), exactly as
// the browser build uses it; tsx compiles the TypeScript on the fly and scripts/wgsl-loader.mjs
// serves the shaders, so the CLI runs the same source as the site with no build step.
import { register } from 'tsx/esm/api';

register();
await import('../scripts/wgsl-loader.mjs');
const { main } = await import('../src/node/cli.ts');
process.exitCode = await main(process.argv.slice(2));
