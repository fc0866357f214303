import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { writeSafetensors } from '../io/safetensors.ts';
import { mkdir } from 'node:fs/promises';
import { adapterSources, directorySources, fileSource, STAGING_DIR, writeFileAtomic, writeFilesAtomic } from './fs-source.ts';

let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'webtune-fs-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('fs-source', () => {
  test('reads exact ranges at offsets and refuses ranges past the end', async () => {
    const p = join(dir, 'bytes.bin');
    await writeFile(p, Uint8Array.from({ length: 100 }, (_, i) => i));
    const s = await fileSource(p);
    expect(s.size).toBe(100);
    expect([...(await s.read(95, 5))]).toEqual([95, 96, 97, 98, 99]);
    await expect(s.read(96, 5)).rejects.toBeInstanceOf(ModelFileError);
    await expect(fileSource(join(dir, 'absent'))).rejects.toMatchObject({ details: { reason: 'missing-file' } });
  });

  test('a model folder on disk opens through directorySources', async () => {
    const m = join(dir, 'model');
    await writeFilesAtomic(m, {
      'config.json': JSON.stringify({ model_type: 'llama' }),
      'model.safetensors': writeSafetensors({ 'model.norm.weight': { dtype: 'F32', shape: [2], data: new Float32Array([3, 4]) } }),
    });
    const folder = await openModelFolder(await directorySources(m));
    const idx = await folder.tensorIndex();
    expect([...(await idx.get('model.norm.weight')!.readFloat32())]).toEqual([3, 4]);
  });

  test('writeFileAtomic replaces the file and leaves no temporaries', async () => {
    const p = join(dir, 'out', 'adapter_config.json');
    await writeFileAtomic(p, new TextEncoder().encode('one'));
    await writeFileAtomic(p, new TextEncoder().encode('two'));
    expect(await readFile(p, 'utf8')).toBe('two');
    expect(await readdir(join(dir, 'out'))).toEqual(['adapter_config.json']);
  });

  test('a failed write leaves the previous files untouched and no temporaries', async () => {
    const out = join(dir, 'adapter');
    await writeFilesAtomic(out, { 'adapter_model.safetensors': 'old weights', 'adapter_config.json': 'old config' });
    // A name that cannot be created (a directory in the way) fails mid-way through the set.
    await expect(writeFilesAtomic(out, { 'adapter_model.safetensors': 'new weights', 'no/such/dir.json': 'x' })).rejects.toThrow();
    expect(await readFile(join(out, 'adapter_model.safetensors'), 'utf8')).toBe('old weights');
    expect((await readdir(out)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  });

  test('a committed save cut short is finished by the next reader; an uncommitted one is ignored, then cleaned', async () => {
    const out = join(dir, 'half-saved');
    await writeFilesAtomic(out, { 'adapter_config.json': 'old config', 'adapter_model.safetensors': 'old weights', 'train.jsonl': 'log' });
    // As a kill between the two renames leaves it: the weights moved, the config still staged.
    const staging = join(out, STAGING_DIR);
    await mkdir(staging);
    await writeFile(join(staging, 'adapter_config.json'), 'new config');
    await writeFile(join(staging, 'COMMIT'), '');
    await writeFile(join(out, 'adapter_model.safetensors'), 'new weights');
    const [c, w] = await adapterSources(out);
    expect(new TextDecoder().decode(await c.read(0, c.size))).toBe('new config');
    expect(new TextDecoder().decode(await w.read(0, w.size))).toBe('new weights');
    expect((await readdir(out)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'train.jsonl']);
    // Killed before the commit point: readers see the old files; the next save removes the staging.
    await mkdir(staging);
    await writeFile(join(staging, 'adapter_config.json'), 'newer, half written');
    const [c2] = await adapterSources(out);
    expect(new TextDecoder().decode(await c2.read(0, c2.size))).toBe('new config');
    await writeFilesAtomic(out, { 'adapter_config.json': 'newest' });
    expect((await readdir(out)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'train.jsonl']);
    expect(await readFile(join(out, 'train.jsonl'), 'utf8')).toBe('log');
  });
});
