// Node loader hook: lets `node --import tsx --import ./scripts/wgsl-loader.mjs` run TypeScript that
// imports `shaders/x.wgsl?raw` the way Vite does (default export = the file's text). Only the bench
// and the CLI need it; the browser build and vitest get the same imports from Vite itself.
import { register } from 'node:module';

if (!globalThis.__wgslLoaderRegistered) {
  globalThis.__wgslLoaderRegistered = true;
  register(import.meta.url, import.meta.url);
}

export async function resolve(specifier, context, next) {
  if (specifier.endsWith('.wgsl?raw')) {
    const url = new URL(specifier.slice(0, -'?raw'.length), context.parentURL);
    return { url: url.href + '?raw', shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (url.endsWith('.wgsl?raw')) {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(new URL(url.slice(0, -'?raw'.length)), 'utf8');
    return { format: 'module', source: `export default ${JSON.stringify(text)};`, shortCircuit: true };
  }
  return next(url, context);
}
