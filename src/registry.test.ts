// Every kernel is a set: shaders/x.wgsl, its host src/kernels/x.ts, its CPU twin x.ref.ts and its
// test x.test.ts. This test keeps the set whole as kernels are added.
import { describe, expect, test } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const stems = readdirSync(`${root}/shaders`).filter((f) => f.endsWith('.wgsl')).map((f) => f.slice(0, -5));

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
