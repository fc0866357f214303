import { describe, expect, test } from 'vitest';
import { expandIncludes, sourceLine, WGSL_LIB } from './wgsl-lib.ts';
import { subgroupVariant } from '../kernels/subgroups.ts';

const lib = { pair: 'const A = 1u;\nconst B = 2u;\n', other: 'const C = 3u;' };

describe('expandIncludes', () => {
  test('text without includes comes back as it is', () => {
    const code = 'const X = 1u;\n// #include is only a word here\n';
    expect(expandIncludes('s', code, lib)).toBe(code);
  });

  test('an include line becomes a comment and the snippet follows the last line', () => {
    const code = ['// head', '//#include pair', 'fn f() -> u32 { return A + B; }', '//#include other'].join('\n');
    const out = expandIncludes('s', code, lib).split('\n');
    expect(out).toEqual([
      '// head',
      '// shaders/lib/pair.wgsl: appended below',
      'fn f() -> u32 { return A + B; }',
      '// shaders/lib/other.wgsl: appended below',
      '//#lib pair, included at line 2',
      'const A = 1u;',
      'const B = 2u;',
      '//#lib other, included at line 4',
      'const C = 3u;',
    ]);
    // The shader keeps its line numbers; lines past its end map back into the snippets.
    const text = out.join('\n');
    expect(sourceLine('s', text, 3)).toBe('s.wgsl:3');
    expect(sourceLine('s', text, 7)).toBe('shaders/lib/pair.wgsl:2 (included by s.wgsl:2)');
    expect(sourceLine('s', text, 9)).toBe('shaders/lib/other.wgsl:1 (included by s.wgsl:4)');
  });

  test('an unknown name is an Error naming the shader, the line and the include', () => {
    expect(() => expandIncludes('matvec_x', 'const A = 0u;\n//#include nope', lib)).toThrow(
      /^matvec_x\.wgsl:2: \/\/#include nope: no shaders\/lib\/nope\.wgsl \(known: pair, other\)$/,
    );
  });

  test('snippets may not include (no nesting)', () => {
    const nested = { ...lib, outer: 'const D = 4u;\n//#include pair\n' };
    expect(() => expandIncludes('s', '//#include outer', nested)).toThrow(
      /s\.wgsl:1: \/\/#include outer: shaders\/lib\/outer\.wgsl:2 includes again; snippets may not nest/,
    );
  });

  test.each([
    ['an indented include', 'fn f() {\n  //#include pair\n}', /s\.wgsl:2: expected an unindented/],
    ['a name twice', '//#include pair\n//#include pair', /s\.wgsl:2: \/\/#include pair a second time/],
    ['a malformed line', '//#include', /s\.wgsl:1: expected an unindented "\/\/#include NAME"/],
    ['an include inside //#if subgroups', '//#if subgroups\n//#include pair\n//#endif', /s\.wgsl:2: \/\/#include inside an \/\/#if subgroups block/],
  ])('rejects %s', (_, code, message) => {
    expect(() => expandIncludes('s', code, lib)).toThrow(message);
  });
});

describe('includes and //#if subgroups', () => {
  // gemv_reduce holds `//#if subgroups` blocks of its own: subgroupVariant resolves the include
  // first, then cuts the snippet's blocks as it cuts the shader's.
  const shader = ['//#if subgroups', 'enable subgroups;', '//#endif', '//#include gemv_reduce', 'const MR = 4u;'].join('\n');
  const code = (t: string) => t.split('\n').filter((l) => !l.trim().startsWith('//'));

  test('the subgroup path keeps the snippet\'s subgroup lines, the other drops them', () => {
    const on = code(subgroupVariant(shader, true, 'composed'));
    const off = code(subgroupVariant(shader, false, 'composed'));
    expect(on).toContain('enable subgroups;');
    expect(on.join('\n')).toMatch(/@builtin\(subgroup_id\) sg: u32/);
    expect(on.join('\n')).toMatch(/subgroupAdd\(acc\[c\]\[m\]\)/);
    expect(off.join('\n')).not.toMatch(/subgroup/);
    expect(off.join('\n')).toMatch(/fn subSum\(wg: Wg\) -> bool \{\s*return false;\s*\}/);
    // Both paths hold the whole snippet otherwise, after the shader's own lines.
    for (const path of [on, off]) expect(path.indexOf('const MR = 4u;')).toBeLessThan(path.indexOf('fn redSum(o: u32, parts: u32) -> f32 {'));
  });

  test('subgroupVariant keeps the shader\'s line numbers and leaves Gpu.kernel nothing to resolve', () => {
    const out = subgroupVariant(shader, true, 'composed');
    expect(out.split('\n').slice(0, 5)).toEqual(['', 'enable subgroups;', '', '// shaders/lib/gemv_reduce.wgsl: appended below', 'const MR = 4u;']);
    expect(expandIncludes('composed', out)).toBe(out);
    expect(expandIncludes('composed', expandIncludes('composed', shader))).toBe(expandIncludes('composed', shader));
    const n = out.split('\n').indexOf('fn redSum(o: u32, parts: u32) -> f32 {') + 1;
    const libLine = WGSL_LIB.gemv_reduce.split('\n').indexOf('fn redSum(o: u32, parts: u32) -> f32 {') + 1;
    expect(sourceLine('composed', out, n)).toBe(`shaders/lib/gemv_reduce.wgsl:${libLine} (included by composed.wgsl:4)`);
  });

  test('an unknown include through subgroupVariant names the kernel', () => {
    expect(() => subgroupVariant('//#include missing_one', true, 'matvec')).toThrow(/^matvec\.wgsl:1: \/\/#include missing_one: no shaders\/lib\/missing_one\.wgsl/);
  });
});
