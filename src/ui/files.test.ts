import { describe, expect, it } from 'vitest';
import { folderName, isPickle, refuseDatasetPickle } from './files.ts';

describe('dropped files', () => {
  it('refuses pickles with the reason and names the file', () => {
    expect(isPickle('pytorch_model.bin')).toBe(true);
    expect(isPickle('train.jsonl')).toBe(false);
    const e = refuseDatasetPickle('weights.pt');
    expect(e?.message).toMatch(/weights\.pt .*can execute arbitrary code/);
    expect(e?.details.file).toBe('weights.pt');
    expect(refuseDatasetPickle('data.csv')).toBeUndefined();
  });
  it('names a folder by its top directory', () => {
    const f = (name: string, rel: string) => Object.assign(new File(['x'], name), { webkitRelativePath: rel });
    expect(folderName([f('config.json', 'tiny/config.json'), f('model.safetensors', 'tiny/model.safetensors')])).toBe('tiny');
    expect(folderName([new File(['x'], 'config.json')])).toBe('config.json');
  });
});
