// Each bad path is refused by the preflight checks with a FileSystemError naming it, quickly and
// without touching anything but a probe file.
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { FileSystemError } from '../errors.ts';
import { bounded, CHECK_TIMEOUT_MS, checkFreeSpace, checkOutputDir, checkReadableFile, checkWritableFile, fsError, isFsError } from './preflight.ts';

let dir: string;
let file: string;
const root = process.getuid?.() === 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'webtune-preflight-'));
  file = join(dir, 'data.jsonl');
  await writeFile(file, '{"text": "x"}\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function refused(p: Promise<unknown>, path: string, errno: string | RegExp): Promise<FileSystemError> {
  const e = await p.then(() => null, (x: unknown) => x);
  expect(e).toBeInstanceOf(FileSystemError);
  const f = e as FileSystemError;
  expect(f.message).toContain(path);
  expect(String(f.details.errno)).toMatch(errno);
  expect(f.hint.length).toBeGreaterThan(0);
  return f;
}

describe('checkReadableFile', () => {
  test('accepts a file; refuses a missing path, a folder and a device, naming them', async () => {
    await checkReadableFile(file, '--data');
    await refused(checkReadableFile(join(dir, 'nope.jsonl'), '--data'), join(dir, 'nope.jsonl'), 'ENOENT');
    const f = await refused(checkReadableFile(dir, '--data'), dir, 'EISDIR');
    expect(f.message).toMatch(/^--data .*folder/);
    await refused(checkReadableFile('/dev/null', '--data'), '/dev/null', 'ENOTREG');
    await refused(checkReadableFile(join(file, 'x'), '--data'), join(file, 'x'), 'ENOTDIR');
  });
});

describe('checkOutputDir', () => {
  test('creates a missing folder, leaves an existing one as it was', async () => {
    const out = join(dir, 'a', 'b', 'out');
    await checkOutputDir(out, '--out');
    expect(await readdir(out)).toEqual([]);
    await writeFile(join(out, 'keep'), 'k');
    await checkOutputDir(out, '--out');
    expect(await readdir(out)).toEqual(['keep']);
  });

  test('refuses a file, a path under a file, /proc and /sys before touching them', async () => {
    await refused(checkOutputDir(file, '--out'), file, 'ENOTDIR');
    const f = await refused(checkOutputDir(join(file, 'sub', 'out'), '--out'), file, 'ENOTDIR');
    expect(f.message).toContain('no folder can be made under it');
    const t0 = performance.now();
    await refused(checkOutputDir('/proc/webtune-out', '--out'), '/proc/webtune-out', 'EKERNELFS');
    await refused(checkOutputDir('/proc/self/fd', '--out'), '/proc/self/fd', 'EKERNELFS');
    await refused(checkOutputDir('/sys/kernel/x', '--out'), '/sys/kernel/x', 'EKERNELFS');
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test('refuses a folder without write permission (and a log file in it)', async () => {
    const ro = join(dir, 'ro');
    await mkdir(ro);
    await chmod(dir, 0o755);
    await chmod(ro, 0o555);
    const errors = await unprivileged(`
      const { checkOutputDir, checkWritableFile } = await import(${JSON.stringify(new URL('./preflight.ts', import.meta.url).href)});
      const out = [];
      for (const p of [() => checkOutputDir(${JSON.stringify(ro)}, '--out'), () => checkOutputDir(${JSON.stringify(join(ro, 'sub'))}, '--out'), () => checkWritableFile(${JSON.stringify(join(ro, 'log.jsonl'))}, '--log')]) {
        out.push(await p().then(() => null, (e) => e.toJSON()));
      }
      console.log(JSON.stringify(out));`);
    expect(errors.map((e) => e?.details.errno)).toEqual(['EACCES', 'EACCES', 'EACCES']);
    expect(errors.map((e) => e?.message.split(':')[0])).toEqual([`--out ${ro}`, `--out ${join(ro, 'sub')}`, `--log ${join(ro, 'log.jsonl')}`]);
  });
});

/** Runs `code` (an ES module body that prints JSON) without root's powers: as root every permission
 *  check passes, so it runs in a child as user nobody; otherwise as this user. */
function unprivileged(code: string): Promise<{ message: string; details: Record<string, unknown> }[]> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)), ...(root ? { uid: 65534, gid: 65534 } : {}),
    });
    let out = '', err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.on('exit', (c) => (c === 0 ? resolveRun(JSON.parse(out)) : reject(new Error(err))));
  });
}

describe('checkWritableFile', () => {
  test('accepts a new file (not left behind) and an existing one (content kept)', async () => {
    const log = join(dir, 'train.jsonl');
    await checkWritableFile(log, '--log');
    expect((await readdir(dir)).includes('train.jsonl')).toBe(false);
    await checkWritableFile(file, '--log');
    expect(await readFile(file, 'utf8')).toBe('{"text": "x"}\n');
    await checkWritableFile('/dev/null', '--log');
  });

  test('refuses a folder, a missing parent, a path under a file and /proc', async () => {
    await refused(checkWritableFile(dir, '--log'), dir, 'EISDIR');
    await refused(checkWritableFile(join(dir, 'none', 'log.jsonl'), '--log'), join(dir, 'none'), 'ENOENT');
    await refused(checkWritableFile(join(file, 'log.jsonl'), '--log'), file, 'ENOTDIR');
    await refused(checkWritableFile('/proc/webtune.log', '--log'), '/proc/webtune.log', 'EKERNELFS');
  });
});

describe('fsError', () => {
  test('maps each errno to a typed message naming the path', async () => {
    for (const code of ['ENOENT', 'EACCES', 'EISDIR', 'ENOTDIR', 'ENOSPC', 'EROFS']) {
      const e = Object.assign(new Error(`${code}: raw`), { code, path: '/x/y', syscall: 'open' });
      expect(isFsError(e)).toBe(true);
      const f = fsError(e, undefined, '--out');
      expect(f).toBeInstanceOf(FileSystemError);
      expect(f.message).toMatch(new RegExp(`^--out /x/y: .+ \\(${code}\\)\\.$`));
      expect(f.details).toMatchObject({ path: '/x/y', errno: code });
    }
    // A real one from Node.
    const real = await readFile(join(dir, 'missing')).catch((x: unknown) => x);
    expect(fsError(real).message).toContain(join(dir, 'missing'));
    expect(isFsError(new Error('plain'))).toBe(false);
  });
});

describe('bounded', () => {
  test('a file-system call that never answers becomes a FileSystemError after the time limit', async () => {
    vi.useFakeTimers();
    try {
      const stuck = bounded(new Promise<never>(() => {}), '/mnt/nfs/out', '--out');
      const seen = stuck.then(() => null, (e: unknown) => e);
      await vi.advanceTimersByTimeAsync(CHECK_TIMEOUT_MS);
      const e = await seen;
      expect(e).toBeInstanceOf(FileSystemError);
      expect((e as FileSystemError).message).toBe(`--out /mnt/nfs/out: the file system did not answer within ${CHECK_TIMEOUT_MS / 1000} s.`);
      expect((e as FileSystemError).details).toMatchObject({ errno: 'ETIMEDOUT', path: '/mnt/nfs/out' });
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('checkFreeSpace', () => {
  test('passes what fits and refuses what cannot, naming the folder and both sizes', async () => {
    await checkFreeSpace(dir, 1024, '--out');
    const e = await refused(checkFreeSpace(dir, 2 ** 60, '--out'), dir, 'ENOSPC');
    expect(e.message).toMatch(/ free on its disk, the adapter needs 1048576\.0 TiB \(ENOSPC\)\.$/);
  });
});

