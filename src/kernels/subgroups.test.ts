import { describe, expect, test } from 'vitest';
import crossEntropy from '../../shaders/cross_entropy.wgsl?raw';
import gradNorm from '../../shaders/grad_norm.wgsl?raw';
import rmsnormBackward from '../../shaders/rmsnorm_backward.wgsl?raw';
import rmsnormForward from '../../shaders/rmsnorm_forward.wgsl?raw';
import { subgroupVariant } from './subgroups.ts';

describe('subgroupVariant', () => {
  const src = ['a', '//#if subgroups', 'b', '//#else', 'c', '//#endif', 'd'].join('\n');
  test('keeps one branch and the line count', () => {
    expect(subgroupVariant(src, true).split('\n')).toEqual(['a', '', 'b', '', '', '', 'd']);
    expect(subgroupVariant(src, false).split('\n')).toEqual(['a', '', '', '', 'c', '', 'd']);
  });
  test('rejects nesting', () => {
    expect(() => subgroupVariant('//#if subgroups\n//#if subgroups\n//#endif', true)).toThrow(/nested/);
  });
  test.each([
    ['rmsnorm_forward', rmsnormForward],
    ['rmsnorm_backward', rmsnormBackward],
    ['cross_entropy', crossEntropy],
    ['grad_norm', gradNorm],
  ])('%s: the subgroup path uses subgroups, the other none', (_, code) => {
    // Code only: the header comments name both paths.
    const code_ = (t: string) => t.split('\n').filter((l) => !l.trim().startsWith('//')).join('\n');
    const on = code_(subgroupVariant(code, true)), off = code_(subgroupVariant(code, false));
    expect(on).toMatch(/^enable subgroups;$/m);
    expect(on).toMatch(/subgroup(Add|Max)\(/);
    expect(off).not.toMatch(/subgroup/);
    expect(off).toMatch(/for \(var s = WG \/ 2u|for \(var k = WG \/ 2u/);
  });
});
