// 16-bit encodings: hand-picked rounding cases, every 16-bit value round-tripping, and random f32
// values against numpy's float16 conversion (an independent IEEE implementation).
import { describe, expect, test } from 'vitest';
import { execFileSync } from 'node:child_process';
import { f16BitsToNumber } from '../io/safetensors.ts';
import { rng } from '../rng.ts';
import { bf16Bits, f16Bits } from './float16.ts';

const bf16ToNumber = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0];

describe('f16Bits / bf16Bits round to nearest, ties to even', () => {
  test('hand-picked cases', () => {
    expect(f16Bits(1)).toBe(0x3c00);
    expect(f16Bits(-2)).toBe(0xc000);
    expect(f16Bits(65504)).toBe(0x7bff);
    expect(f16Bits(65519)).toBe(0x7bff);
    expect(f16Bits(65520)).toBe(0x7c00); // the tie above the largest half goes to infinity
    expect(f16Bits(2 ** -24)).toBe(1);
    expect(f16Bits(2 ** -25)).toBe(0); // tie between 0 and the smallest subnormal: even is 0
    expect(f16Bits(3 * 2 ** -25)).toBe(2);
    expect(f16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(f16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f16Bits(-0)).toBe(0x8000);
    expect(f16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(bf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(bf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(bf16Bits(-1.5)).toBe(0xbfc0);
    expect(bf16Bits(NaN)).toBe(0x7fc0);
  });

  test('every finite 16-bit value encodes back to itself', () => {
    const wrong: string[] = [];
    for (let h = 0; h < 65536; h++) {
      const x = f16BitsToNumber(h), y = bf16ToNumber(h);
      if (!Number.isNaN(x) && f16Bits(x) !== h) wrong.push(`f16 ${h}`);
      if (!Number.isNaN(y) && bf16Bits(y) !== h) wrong.push(`bf16 ${h}`);
    }
    expect(wrong).toEqual([]);
  });

  test('random f32 values agree with numpy float16', () => {
    const r = rng(3);
    const xs = Float32Array.from({ length: 4000 }, (_, i) => (r() - 0.5) * 2 ** ((i % 40) - 28));
    const hex = Buffer.from(xs.buffer).toString('hex');
    const out = execFileSync('python3', ['-c', 'import sys,numpy as np;a=np.frombuffer(bytes.fromhex(sys.stdin.read()),dtype="<f4");sys.stdout.write(a.astype(np.float16).tobytes().hex())'], { input: hex }).toString();
    const want = new Uint16Array(Buffer.from(out, 'hex').buffer.slice(0));
    const got = Uint16Array.from(xs, f16Bits);
    expect([...got]).toEqual([...want]);
  });
});
