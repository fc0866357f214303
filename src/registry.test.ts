// Every kernel is a set: shaders/x.wgsl, its host src/kernels/x.ts, its CPU twin x.ref.ts and its
// test x.test.ts. This test keeps the set whole as kernels are added.
import { describe, expect, test } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expandIncludes, WGSL_LIB } from './gpu/wgsl-lib.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const stems = readdirSync(`${root}/shaders`).filter((f) => f.endsWith('.wgsl')).map((f) => f.slice(0, -5));
// shaders/lib/ holds snippets that kernels include (src/gpu/wgsl-lib.ts), not kernels.
const libs = readdirSync(`${root}/shaders/lib`).filter((f) => f.endsWith('.wgsl')).map((f) => f.slice(0, -5));
const includers = (lib: string) => stems.filter((s) => new RegExp(`^//#include ${lib}$`, 'm').test(readFileSync(`${root}/shaders/${s}.wgsl`, 'utf8')));

describe('kernel registry', () => {
  test('there are kernels', () => {
    expect(stems.length).toBeGreaterThan(0);
  });
  test.each(stems)('%s has a host module, a CPU twin and a test that uses both', (stem) => {
    const k = `${root}/src/kernels/${stem}`;
    for (const f of [`${k}.ts`, `${k}.ref.ts`, `${k}.test.ts`]) expect(existsSync(f), f).toBe(true);
    expect(readFileSync(`${k}.ts`, 'utf8')).toContain(`shaders/${stem}.wgsl?raw`);
    const t = readFileSync(`${k}.test.ts`, 'utf8');
    expect(t).toMatch(new RegExp(`from '\\./${stem}\\.ts'`));
    expect(t).toMatch(new RegExp(`from '\\./${stem}\\.ref\\.ts'`));
  });
  test.each(stems)('%s.wgsl opens with a comment saying what it computes', (stem) => {
    expect(readFileSync(`${root}/shaders/${stem}.wgsl`, 'utf8').trimStart().startsWith('//')).toBe(true);
  });
});

describe('shaders/lib snippets', () => {
  test('wgsl-lib.ts lists exactly the files in shaders/lib/', () => {
    expect(Object.keys(WGSL_LIB).sort()).toEqual([...libs].sort());
    for (const l of libs) expect(WGSL_LIB[l], l).toBe(readFileSync(`${root}/shaders/lib/${l}.wgsl`, 'utf8'));
  });
  test.each(libs)('lib/%s.wgsl opens with a comment and is included by a shader', (lib) => {
    expect(readFileSync(`${root}/shaders/lib/${lib}.wgsl`, 'utf8').trimStart().startsWith('//')).toBe(true);
    expect(includers(lib).length, `no shader includes lib/${lib}.wgsl`).toBeGreaterThan(0);
  });
  test.each(stems)('%s.wgsl: every include resolves', (stem) => {
    expect(() => expandIncludes(stem, readFileSync(`${root}/shaders/${stem}.wgsl`, 'utf8'))).not.toThrow();
  });
});

// docs/kernels.md is the map a newcomer reads: one table row per kernel linking its WGSL, host, twin
// and test. Written by hand, so this checks it cannot drift from the files; and no docs/ page may
// link to a file that does not exist.
const relativeLinks = (md: string) =>
  [...md.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)].map((m) => m[1]).filter((l) => !/^[a-z]+:/.test(l));

describe('docs/kernels.md', () => {
  const doc = readFileSync(`${root}/docs/kernels.md`, 'utf8');

  test.each(stems)('%s has a row linking its WGSL, host, twin and test', (stem) => {
    const row = doc.split('\n').find((l) => l.startsWith(`| [${stem}.wgsl](../shaders/${stem}.wgsl) |`));
    expect(row, `no table row for ${stem}.wgsl`).toBeDefined();
    for (const f of [`${stem}.ts`, `${stem}.ref.ts`, `${stem}.test.ts`]) expect(row).toContain(`](../src/kernels/${f})`);
  });

  test.each(libs)('lib/%s.wgsl has a row naming the shaders that include it', (lib) => {
    const row = doc.split('\n').find((l) => l.startsWith(`| [lib/${lib}.wgsl](../shaders/lib/${lib}.wgsl) |`));
    expect(row, `no row for lib/${lib}.wgsl`).toBeDefined();
    const named = [...row!.split(' | ').at(-1)!.matchAll(/\]\(\.\.\/shaders\/([a-z0-9_]+)\.wgsl\)/g)].map((m) => m[1]);
    expect(named.sort()).toEqual(includers(lib).sort());
  });

  test('links every kernel file', () => {
    expect(relativeLinks(doc).length).toBeGreaterThan(4 * stems.length);
  });
});

describe('docs/ links', () => {
  const pages = readdirSync(`${root}/docs`).filter((f) => f.endsWith('.md'));
  test.each(pages)('every relative link in %s points at a file that exists', (page) => {
    const missing = relativeLinks(readFileSync(`${root}/docs/${page}`, 'utf8')).filter((l) => !existsSync(resolve(`${root}/docs`, l)));
    expect(missing).toEqual([]);
  });
});

// Kernels sit just above the GPU runtime: a host imports only the runtime, NF4 (quant), the error
// classes, its shader, its twin and sibling kernel hosts. Model, io, training or data code belongs
// above them and hands kernels plain numbers.
describe('kernel imports', () => {
  const hosts = readdirSync(`${root}/src/kernels`).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.bench.ts') && f !== 'benches.ts');
  test.each(hosts)('%s imports only gpu, quant, errors, shaders and kernels', (f) => {
    const src = readFileSync(`${root}/src/kernels/${f}`, 'utf8');
    const specs = [...src.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]/g)].map((m) => m[1]);
    const bad = specs.filter((s) => !/^(\.\.\/gpu\/|\.\.\/quant\/|\.\.\/errors\.ts$|\.\.\/\.\.\/shaders\/[a-z0-9_]+\.wgsl\?raw$|\.\/[a-z0-9_.-]+\.ts$)/.test(s));
    expect(bad).toEqual([]);
  });
});
