// Paths checked before any work starts: the dataset can be read, the output folder and the log file
// can be written. A run that would only fail when it writes its result, after an hour of training,
// fails here in a second instead, with a message naming the path. Every check is bounded in time
// (a network mount that stops answering must not hang the command), and kernel file systems
// (/proc, /sys) are refused without being touched: they are never a place for a user's files.
import { constants, statfs } from 'node:fs';
import { access, mkdir, open, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { FileSystemError, WebtuneError, formatBytes } from '../errors.ts';

const CAUSES: Record<string, [what: string, hint: string]> = {
  ENOENT: ['does not exist', 'Check the path; a relative path starts from the current folder.'],
  EACCES: ['permission denied', 'Choose a path you may use, or change its permissions.'],
  EPERM: ['operation not permitted', 'Choose a path you may use, or change its permissions.'],
  EISDIR: ['is a folder, not a file', 'Give the path of a file.'],
  ENOTDIR: ['a part of the path is a file, not a folder', 'Give a path whose parents are folders.'],
  ENOSPC: ['no space left on the device', 'Free disk space, or choose a folder on another disk.'],
  EDQUOT: ['disk quota exceeded', 'Free space within your quota, or choose a folder on another disk.'],
  EROFS: ['the file system is read-only', 'Choose a folder on a writable disk.'],
  EEXIST: ['already exists', 'Choose another path, or remove what is there.'],
  ENAMETOOLONG: ['the name is too long', 'Use a shorter path.'],
  ELOOP: ['too many symbolic links', 'Check the symbolic links along the path.'],
  EMFILE: ['too many open files', 'Close other programs or raise the open-file limit (ulimit -n).'],
  EBUSY: ['the resource is busy', 'Try again when the other program is done with it.'],
  EIO: ['an input/output error', 'The disk or network share may be failing; check it and try again.'],
};

/** Any error from a file-system call as a FileSystemError naming the path (`e.path` when Node gives
 *  one, else `path`); `role` says which option it came from. WebtuneErrors pass through unchanged. */
export function fsError(e: unknown, path?: string, role?: string): WebtuneError {
  if (e instanceof WebtuneError) return e;
  const err = e as NodeJS.ErrnoException;
  const code = typeof err?.code === 'string' ? err.code : 'EUNKNOWN';
  const where = err?.path ?? path ?? '(unknown path)';
  const [what, hint] = CAUSES[code] ?? [err?.message ?? String(e), 'Check the path and try again.'];
  return new FileSystemError(`${role ? `${role} ` : ''}${where}: ${what} (${code}).`, hint, { path: where, errno: code, ...(role ? { field: role } : {}) });
}

/** True for errors Node's fs raises (they carry an errno code such as ENOENT). */
export function isFsError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && /^E[A-Z]+$/.test((e as NodeJS.ErrnoException).code!) && 'syscall' in e;
}

/** How long one check may take before we give up on the path. */
export const CHECK_TIMEOUT_MS = 10_000;

/** `p`, or a FileSystemError naming `path` if it has not settled within CHECK_TIMEOUT_MS. (The
 *  stuck system call itself cannot be cancelled; the command reports and ends instead of waiting.) */
export async function bounded<T>(p: Promise<T>, path: string, role: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FileSystemError(
      `${role} ${path}: the file system did not answer within ${CHECK_TIMEOUT_MS / 1000} s.`,
      'A network share or device may be hanging; choose a path on a local disk.', { path, errno: 'ETIMEDOUT', field: role })), CHECK_TIMEOUT_MS);
    timer.unref?.();
  });
  try {
    return await Promise.race([p, timeout]);
  } catch (e) {
    throw fsError(e, path, role);
  } finally {
    clearTimeout(timer);
  }
}

// statfs f_type values of kernel file systems (linux/magic.h).
const KERNEL_FS: Record<number, string> = {
  0x9fa0: 'proc', 0x62656572: 'sysfs', 0x27e0eb: 'cgroup', 0x63677270: 'cgroup2', 0x64626720: 'debugfs',
  0x74726163: 'tracefs', 0x73636673: 'securityfs', 0x1cd1: 'devpts', 0xcafe4a11: 'bpf',
};
const KERNEL_PREFIX = /^\/(proc|sys)(\/|$)/;

/** The nearest existing ancestor of `abs` (itself included) and what stands there. */
async function nearestExisting(abs: string): Promise<{ path: string; isDir: boolean }> {
  for (let p = abs; ; p = dirname(p)) {
    try {
      const st = await stat(p);
      return { path: p, isDir: st.isDirectory() };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
      if (dirname(p) === p) throw e;
    }
  }
}

function kernelFs(abs: string, role: string, type?: number): void {
  const name = type !== undefined ? KERNEL_FS[type] : undefined;
  const m = KERNEL_PREFIX.exec(abs);
  if (name || m) {
    throw new FileSystemError(`${role} ${abs} is inside ${name ? `a ${name}` : `/${m![1]}, a`} kernel file system, which cannot hold files.`,
      'Choose a folder on a disk, e.g. in your home folder.', { path: abs, errno: 'EKERNELFS', field: role });
  }
}

async function fsType(path: string): Promise<number | undefined> {
  try {
    return (await promisify(statfs)(path)).type;
  } catch {
    return undefined; // statfs is missing on some platforms; the path check still applies
  }
}

/** `path` is a regular file we can open for reading (not a folder, a device or a pipe, which could
 *  block or never end). */
export async function checkReadableFile(path: string, role: string): Promise<void> {
  const abs = resolve(path);
  await bounded((async () => {
    const st = await stat(abs);
    if (st.isDirectory()) throw Object.assign(new Error('EISDIR'), { code: 'EISDIR', path: abs, syscall: 'open' });
    if (!st.isFile()) {
      throw new FileSystemError(`${role} ${abs} is not a regular file (a device, pipe or socket).`, 'Give the path of a file on disk.', { path: abs, errno: 'ENOTREG', field: role });
    }
    await (await open(abs, 'r')).close();
  })(), abs, role);
}

/** `path` is, or can be made, a folder we can write into. The folder is created (as training would
 *  create it at the end) and a probe file written and removed in it: the only test that also catches
 *  read-only mounts and, as root, what access() would wave through. */
export async function checkOutputDir(path: string, role: string): Promise<void> {
  const abs = resolve(path);
  kernelFs(abs, role);
  await bounded((async () => {
    const near = await nearestExisting(abs);
    kernelFs(abs, role, await fsType(near.path));
    if (!near.isDir) {
      throw new FileSystemError(near.path === abs ? `${role} ${abs} is a file, not a folder.` : `${role} ${abs}: ${near.path} is a file, so no folder can be made under it.`,
        'Give the path of a folder (it is created if it does not exist).', { path: near.path, errno: 'ENOTDIR', field: role });
    }
    await mkdir(abs, { recursive: true });
    const probe = join(abs, `.webtune-probe-${process.pid}`);
    try {
      await (await open(probe, 'w')).close();
      await rm(probe, { force: true });
    } catch (e) {
      throw fsError(Object.assign(e as Error, { path: abs }), abs, role); // the folder is what the user named
    }
  })(), abs, role);
}

/** `path` is a file we can create or append to (its content is left as it is). */
export async function checkWritableFile(path: string, role: string): Promise<void> {
  const abs = resolve(path);
  // Not even an existing file there: as root, a log line written to /proc/sys/... changes the kernel.
  kernelFs(abs, role);
  await bounded((async () => {
    const near = await nearestExisting(abs);
    if (near.path === abs) {
      const st = await stat(abs);
      if (st.isDirectory()) throw Object.assign(new Error('EISDIR'), { code: 'EISDIR', path: abs, syscall: 'open' });
      // A device or pipe (/dev/null, /dev/stdout) is fine as a log; opening a pipe could block, so
      // only its permission is checked.
      if (!st.isFile()) return access(abs, constants.W_OK);
      return (await open(abs, 'a')).close();
    }
    kernelFs(abs, role, await fsType(near.path));
    if (!near.isDir || near.path !== dirname(abs)) {
      throw new FileSystemError(!near.isDir ? `${role} ${abs}: ${near.path} is a file, not a folder.` : `${role} ${abs}: the folder ${dirname(abs)} does not exist.`,
        !near.isDir ? 'Give a path whose parents are folders.' : 'Create the folder first, or write the file somewhere that exists.',
        { path: near.isDir ? dirname(abs) : near.path, errno: near.isDir ? 'ENOENT' : 'ENOTDIR', field: role });
    }
    await (await open(abs, 'wx')).close();
    await rm(abs, { force: true });
  })(), abs, role);
}

/** The folder's disk has room for `bytes` more (with a margin for the staging copy's metadata): a
 *  full disk found at the end of training would lose the run. Unknown free space passes. */
export async function checkFreeSpace(dir: string, bytes: number, role: string): Promise<void> {
  const abs = resolve(dir);
  let free: number;
  try {
    const st = await bounded(promisify(statfs)(abs), abs, role);
    free = st.bavail * st.bsize;
  } catch {
    return; // statfs missing (some platforms) or failing: the save itself reports what goes wrong
  }
  const need = bytes + 64 * 1024;
  if (free < need) {
    throw new FileSystemError(`${role} ${abs}: ${formatBytes(free)} free on its disk, the adapter needs ${formatBytes(need)} (ENOSPC).`,
      'Free disk space, or choose a folder on another disk.', { path: abs, errno: 'ENOSPC', field: role, free, need });
  }
}

