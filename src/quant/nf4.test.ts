// Unit tests of the CPU NF4 reference (src/quant/nf4.ts) against docs/nf4.md (bitsandbytes) and the PyTorch golden
// (scripts/goldens/nf4.py -> fixtures/goldens/nf4.json).
import { describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { assertClose, assertEqualInts, goldenArray, loadGolden, type GoldenTensor } from '../testing/compare.ts';
import {
  DYNAMIC_MAP,
  NF4,
  NF4_BITS,
  NF4_THRESHOLDS,
  codeAt,
  dequantizeBlockwise,
  dequantizeNF4,
  doubleDequantize,
  doubleQuantize,
  doubleQuantizeWithOffset,
  dqAbsmax,
  dqWords,
  packDoubleQuant,
  nf4Code,
  packWords,
  quantizeNF4,
  unpackCodes,
  unpackWords,
} from './nf4.ts';

const golden = loadGolden('nf4');
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer.slice(0));
/** Golden tensors stored as int32 views of f32 (exact, compact). */
const fromBits = (t: GoldenTensor | number) => new Float32Array(Int32Array.from((t as GoldenTensor).data).buffer);
const ints = (t: GoldenTensor | number) => Uint32Array.from((t as GoldenTensor).data);

// The bitsandbytes 8-bit dynamic map, create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8),
// regenerated in numpy float32 (linspace in f64 cast to f32, means and products in f32).
const DYNAMIC_MAP_NUMPY = [
  -0.992968738079071, -0.9789062738418579, -0.96484375, -0.9507812261581421, -0.936718761920929, -0.922656238079071, -0.9085937738418579, -0.89453125,
  -0.8804687261581421, -0.866406261920929, -0.852343738079071, -0.8382812738418579, -0.82421875, -0.8101562261581421, -0.796093761920929, -0.782031238079071,
  -0.7679687738418579, -0.75390625, -0.7398437261581421, -0.725781261920929, -0.711718738079071, -0.6976562738418579, -0.68359375, -0.6695312261581421,
  -0.655468761920929, -0.641406238079071, -0.6273437738418579, -0.61328125, -0.5992187261581421, -0.585156261920929, -0.571093738079071, -0.5570312738418579,
  -0.54296875, -0.5289062261581421, -0.514843761920929, -0.500781238079071, -0.4867187738418579, -0.47265625, -0.4585937261581421, -0.44453126192092896,
  -0.43046873807907104, -0.4164062738418579, -0.40234375, -0.3882812261581421, -0.37421876192092896, -0.36015623807907104, -0.3460937738418579, -0.33203125,
  -0.3179687261581421, -0.30390626192092896, -0.28984373807907104, -0.2757812738418579, -0.26171875, -0.24765624105930328, -0.23359374701976776, -0.21953125298023224,
  -0.20546874403953552, -0.19140625, -0.17734375596046448, -0.16328124701976776, -0.14921875298023224, -0.13515624403953552, -0.12109375, -0.10703125596046448,
  -0.09859374910593033, -0.09578125923871994, -0.09296875447034836, -0.09015624970197678, -0.08734375238418579, -0.08453124761581421, -0.08171875774860382, -0.07890625298023224,
  -0.07609374821186066, -0.07328125089406967, -0.07046874612569809, -0.0676562562584877, -0.06484375149011612, -0.06203124672174454, -0.05921875312924385, -0.05640624836087227,
  -0.05359375476837158, -0.05078125, -0.047968752682209015, -0.04515625163912773, -0.04234375059604645, -0.039531249552965164, -0.03671875223517418, -0.033906251192092896,
  -0.031093750149011612, -0.028281250968575478, -0.025468749925494194, -0.02265625074505806, -0.019843751564621925, -0.017031250521540642, -0.014218750409781933, -0.011406250298023224,
  -0.009718749672174454, -0.009156249463558197, -0.008593750186264515, -0.008031249977648258, -0.0074687497690320015, -0.006906250026077032, -0.006343749817460775, -0.005781250074505806,
  -0.0052187503315508366, -0.0046562496572732925, -0.004093749914318323, -0.0035312497057020664, -0.002968749962747097, -0.002406249986961484, -0.001843750011175871, -0.001281249918974936,
  -0.0009437500848434865, -0.0008312499849125743, -0.0007187500596046448, -0.0006062500760890543, -0.000493750034365803, -0.0003812500217463821, -0.0002687500382307917, -0.00015625001105945557,
  -8.874999912222847e-05, -6.625000241911039e-05, -4.374999844003469e-05, -2.1249998098937795e-05, -7.749999895168003e-06, -3.250000190746505e-06, -5.500000384017767e-07, 0.0,
  5.500000384017767e-07, 3.250000190746505e-06, 7.749999895168003e-06, 2.1249998098937795e-05, 4.374999844003469e-05, 6.625000241911039e-05, 8.874999912222847e-05, 0.00015625001105945557,
  0.0002687500382307917, 0.0003812500217463821, 0.000493750034365803, 0.0006062500760890543, 0.0007187500596046448, 0.0008312499849125743, 0.0009437500848434865, 0.001281249918974936,
  0.001843750011175871, 0.002406249986961484, 0.002968749962747097, 0.0035312497057020664, 0.004093749914318323, 0.0046562496572732925, 0.0052187503315508366, 0.005781250074505806,
  0.006343749817460775, 0.006906250026077032, 0.0074687497690320015, 0.008031249977648258, 0.008593750186264515, 0.009156249463558197, 0.009718749672174454, 0.011406250298023224,
  0.014218750409781933, 0.017031250521540642, 0.019843751564621925, 0.02265625074505806, 0.025468749925494194, 0.028281250968575478, 0.031093750149011612, 0.033906251192092896,
  0.03671875223517418, 0.039531249552965164, 0.04234375059604645, 0.04515625163912773, 0.047968752682209015, 0.05078125, 0.05359375476837158, 0.05640624836087227,
  0.05921875312924385, 0.06203124672174454, 0.06484375149011612, 0.0676562562584877, 0.07046874612569809, 0.07328125089406967, 0.07609374821186066, 0.07890625298023224,
  0.08171875774860382, 0.08453124761581421, 0.08734375238418579, 0.09015624970197678, 0.09296875447034836, 0.09578125923871994, 0.09859374910593033, 0.10703125596046448,
  0.12109375, 0.13515624403953552, 0.14921875298023224, 0.16328124701976776, 0.17734375596046448, 0.19140625, 0.20546874403953552, 0.21953125298023224,
  0.23359374701976776, 0.24765624105930328, 0.26171875, 0.2757812738418579, 0.28984373807907104, 0.30390626192092896, 0.3179687261581421, 0.33203125,
  0.3460937738418579, 0.36015623807907104, 0.37421876192092896, 0.3882812261581421, 0.40234375, 0.4164062738418579, 0.43046873807907104, 0.44453126192092896,
  0.4585937261581421, 0.47265625, 0.4867187738418579, 0.500781238079071, 0.514843761920929, 0.5289062261581421, 0.54296875, 0.5570312738418579,
  0.571093738079071, 0.585156261920929, 0.5992187261581421, 0.61328125, 0.6273437738418579, 0.641406238079071, 0.655468761920929, 0.6695312261581421,
  0.68359375, 0.6976562738418579, 0.711718738079071, 0.725781261920929, 0.7398437261581421, 0.75390625, 0.7679687738418579, 0.782031238079071,
  0.796093761920929, 0.8101562261581421, 0.82421875, 0.8382812738418579, 0.852343738079071, 0.866406261920929, 0.8804687261581421, 0.89453125,
  0.9085937738418579, 0.922656238079071, 0.936718761920929, 0.9507812261581421, 0.96484375, 0.9789062738418579, 0.992968738079071, 1.0,
];

describe('NF4 codebook and thresholds', () => {
  test('hex table equals the decimal literals of bitsandbytes get_4bit_type("nf4")', () => {
    const literals = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
      -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
      0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0];
    expect(Array.from(NF4)).toEqual(literals.map(Math.fround));
  });

  test('thresholds are the f32 midpoints (code[:-1] + code[1:]) / 2', () => {
    for (let i = 0; i < 15; i++) expect(NF4_THRESHOLDS[i]).toBe(Math.fround(Math.fround(NF4[i] + NF4[i + 1]) / 2));
  });

  test('a value exactly on a threshold takes the lower code; the next f32 up takes the upper', () => {
    // The next f32 above x (x != 0): one step up in magnitude for x > 0, down for x < 0.
    const nextUp = (x: number) => {
      const b = new Float32Array([x]);
      new Int32Array(b.buffer)[0] += x > 0 ? 1 : -1;
      return b[0];
    };
    for (let i = 0; i < 15; i++) {
      expect(nf4Code(NF4_THRESHOLDS[i])).toBe(i);
      expect(nf4Code(nextUp(NF4_THRESHOLDS[i]))).toBe(i + 1);
    }
    for (let c = 0; c < 16; c++) expect(nf4Code(NF4[c])).toBe(c);
    expect(nf4Code(-1)).toBe(0);
    expect(nf4Code(1)).toBe(15);
    expect(nf4Code(0)).toBe(7);
  });
});

describe('NF4 quantize / dequantize vs PyTorch (bitsandbytes torch reference)', () => {
  const c = golden.quant;
  const n = c.n as number;
  const w = fromBits(c.x_bits);

  test('golden holds >= 10,000 values, odd length, short tail block', () => {
    expect(n).toBeGreaterThanOrEqual(10_000);
    expect(n % 2).toBe(1);
    expect(n % 64).not.toBe(0);
  });

  test('codes, packed bytes and absmax are bit-identical', () => {
    const q = quantizeNF4(w);
    assertEqualInts('codes', unpackCodes(q.packed, n), ints(c.codes));
    assertEqualInts('packed', q.packed, ints(c.packed));
    assertEqualInts('absmax bits', bitsOf(q.absmax), ints(c.absmax_bits));
    // Odd length: the pad nibble is code 7, as bitsandbytes' pad(scaled, (0, 1)) gives.
    expect(q.packed[q.packed.length - 1] & 15).toBe(7);
  });

  test('dequantize equals torch bit for bit', () => {
    const q = quantizeNF4(w);
    const head = goldenArray(c.w_head);
    assertClose('w', dequantizeNF4(q.packed, q.absmax, n).subarray(0, head.length), head, { atol: 0, rtol: 0 });
    const mm = golden.mm_small;
    const N = mm.N as number, K = mm.K as number;
    const deq = dequantizeNF4(Uint8Array.from(ints(mm.packed)), goldenArray(mm.absmax), N * K);
    assertClose('mm_small.w', deq, goldenArray(mm.w), { atol: 0, rtol: 0 });
  });

  test('all-zero block: absmax 0 and code 7 everywhere (torch reference; CUDA would give code 0)', () => {
    const q = quantizeNF4(new Float32Array(64 + 3));
    expect(Array.from(q.absmax)).toEqual([0, 0]);
    expect(Array.from(unpackCodes(q.packed, 67))).toEqual(new Array(67).fill(7));
  });

  test('u32 word packing is little-endian and fills past the end with code 7', () => {
    const packed = Uint8Array.from([0x12, 0x34, 0x56, 0x78, 0x9a]);
    const words = packWords(packed, 9);
    expect(Array.from(words)).toEqual([0x78563412, 0x7777779a]);
    expect(Array.from(unpackWords(words, 9))).toEqual(Array.from(packed));
    expect(codeAt(packed, 0)).toBe(1);
    expect(codeAt(packed, 1)).toBe(2);
  });
});

describe('double quantization', () => {
  const c = golden.dq;
  const absmax = goldenArray(c.absmax);
  const torchMap = goldenArray(c.code);

  test('dynamic map equals the numpy regeneration exactly', () => {
    expect(DYNAMIC_MAP.length).toBe(256);
    expect(Array.from(DYNAMIC_MAP)).toEqual(DYNAMIC_MAP_NUMPY.map(Math.fround));
    expect(DYNAMIC_MAP[127]).toBe(0);
    expect(DYNAMIC_MAP[255]).toBe(1);
  });

  test("torch 1.13's map (torch.linspace) differs from the numpy one by at most 2 ulp", () => {
    const a = new Int32Array(DYNAMIC_MAP.buffer.slice(0)), b = new Int32Array(torchMap.buffer.slice(0));
    let differ = 0;
    for (let i = 0; i < 256; i++) {
      expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(2);
      if (a[i] !== b[i]) differ++;
    }
    // Recorded, not required: 44 entries on torch 1.13. Checkpoints carry nested_quant_map; prefer it.
    expect(differ).toBeLessThan(64);
  });

  test('with torch map and offset: qabsmax, absmax2 and dequantized absmax are bit-identical', () => {
    const offset = c.offset as number;
    const { qabsmax, absmax2 } = doubleQuantizeWithOffset(absmax, offset, torchMap);
    assertEqualInts('qabsmax', qabsmax, ints(c.qabsmax));
    assertEqualInts('absmax2 bits', bitsOf(absmax2), bitsOf(goldenArray(c.absmax2)));
    const back = doubleDequantize({ qabsmax, absmax2, offset, code: torchMap });
    assertEqualInts('absmax_dq bits', bitsOf(back), bitsOf(goldenArray(c.absmax_dq)));
    assertClose('dequantizeBlockwise', dequantizeBlockwise(qabsmax, absmax2, torchMap).subarray(0, 4),
      Float32Array.from([0, 1, 2, 3], (i) => Math.fround(torchMap[qabsmax[i]] * absmax2[0])), { atol: 0, rtol: 0 });
  });

  test('end to end with our own mean and map: close to torch, and a small reconstruction error', () => {
    const s = doubleQuantize(absmax);
    expect(Math.abs(s.offset - (c.offset as number))).toBeLessThanOrEqual(1e-6 * Math.abs(c.offset as number));
    const back = doubleDequantize(s);
    // 8-bit dynamic code near the block max: relative step ~1/70 of absmax2.
    assertClose('absmax round trip', back, absmax, { atol: 0.02 * Math.max(...s.absmax2), rtol: 0 });
    assertClose('absmax vs torch', back, goldenArray(c.absmax_dq), { atol: 1e-3 * Math.max(...s.absmax2), rtol: 1e-5 });
  });
});

describe('double quantization, GPU form (packDoubleQuant / dqAbsmax)', () => {
  const absmax = goldenArray(golden.dq.absmax);
  // Block counts around the packing (4 codes per word) and the 256-code second level.
  test.each([1, 3, 4, 255, 256, 257, 1023, absmax.length])('%i blocks: dqAbsmax reads back doubleDequantize bit for bit', (nb) => {
    const a = Float32Array.from({ length: nb }, (_, i) => absmax[i % absmax.length] * (1 + (i % 7) / 13));
    const s = doubleQuantize(a);
    const words = packDoubleQuant(s);
    expect(words.length).toBe(dqWords(nb));
    assertEqualInts('absmax bits', bitsOf(dqAbsmax(words, nb)), bitsOf(doubleDequantize(s)));
  });

  test('layout: codes little-endian 4 per word, then absmax2, then offset', () => {
    const qabsmax = Uint8Array.from({ length: 257 }, (_, i) => (i * 37 + 11) & 0xff);
    const absmax2 = Float32Array.of(0.5, 0.25);
    const words = packDoubleQuant({ qabsmax, absmax2, offset: 0.125, code: DYNAMIC_MAP });
    expect(words.length).toBe(65 + 2 + 1);
    expect(words[0]).toBe((qabsmax[0] | (qabsmax[1] << 8) | (qabsmax[2] << 16) | (qabsmax[3] << 24)) >>> 0);
    expect(words[64]).toBe(qabsmax[256]); // the last word's unused bytes stay 0
    const f = new Float32Array(words.buffer);
    expect([f[65], f[66], f[67]]).toEqual([0.5, 0.25, 0.125]);
    expect(dqAbsmax(words, 257)[256]).toBe(Math.fround(Math.fround(DYNAMIC_MAP[qabsmax[256]] * 0.25) + 0.125));
  });

  test('refuses a code table other than the dynamic map (the kernels hold that one)', () => {
    const s = doubleQuantize(absmax);
    expect(() => packDoubleQuant({ ...s, code: goldenArray(golden.dq.code) })).toThrow(/dynamic map/);
  });

  // The NF4 kernels carry the tables as hex, once, in shaders/lib/nf4_tables.wgsl (each includes it).
  const shaderText = (path: string) => readFileSync(fileURLToPath(new URL(`../../shaders/${path}.wgsl`, import.meta.url)), 'utf8');
  const hexTable = (src: string, decl: string) => {
    const m = new RegExp(`const ${decl}\\(([^)]*)\\)`).exec(src);
    expect(m, decl).not.toBeNull();
    return m![1].split(',').map((x) => x.trim()).filter(Boolean).map((x) => Number.parseInt(x.replace(/u$/, ''), 16));
  };
  test('shaders/lib/nf4_tables.wgsl holds the dynamic map and the codebook bit for bit', () => {
    const src = shaderText('lib/nf4_tables');
    expect(hexTable(src, 'DMAP = array<u32, 256>')).toEqual(Array.from(bitsOf(DYNAMIC_MAP)));
    expect(hexTable(src, 'NF4 = array<u32, 16>')).toEqual([...NF4_BITS]);
  });
  test.each(['matmul_nf4', 'matmul_nf4_fused', 'matmul_nf4_backward', 'matvec_nf4', 'matvec_nf4_fused', 'nf4_dequantize'])(
    'shaders/%s.wgsl includes the tables and keeps no copy of its own', (stem) => {
      const src = shaderText(stem);
      expect(src).toMatch(/^\/\/#include nf4_tables$/m);
      expect(src).not.toMatch(/const (NF4|DMAP)\b/);
    },
  );
});
