// A ZIP archive of a few files, stored without compression (method 0), for the site's TRL project
// download: every unzip tool and Python's zipfile read it, and nothing needs a deflate library.
// Layout per PKWARE's APPNOTE.TXT (4.3): local file header + data for each file, then the central
// directory, then the end-of-central-directory record. UTF-8 names (general purpose bit 11). No
// ZIP64: an archive over 4 GiB, or over 65,535 files, is refused.
import { UsageError } from '../errors.ts';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, the one ZIP and gzip use). */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** DOS date and time fields of a Date (local time, 2-second resolution, from 1980). */
function dosTime(d: Date): { time: number; date: number } {
  const y = Math.max(1980, d.getFullYear());
  return {
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | Math.floor(d.getSeconds() / 2),
    date: ((y - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  };
}

/** The archive's bytes for files by relative path ('/'-separated), in the order given. */
export function zipStore(files: Record<string, Uint8Array | string>, when = new Date()): Uint8Array {
  const enc = new TextEncoder();
  const { time, date } = dosTime(when);
  const entries = Object.entries(files).map(([path, data]) => {
    const name = enc.encode(path), bytes = typeof data === 'string' ? enc.encode(data) : data;
    return { name, bytes, crc: crc32(bytes), offset: 0 };
  });
  if (entries.length > 0xffff) throw new UsageError(`${entries.length} files are too many for a ZIP without ZIP64.`, 'Export fewer files.');
  const total = entries.reduce((s, e) => s + 30 + e.name.length + e.bytes.length + 46 + e.name.length, 22);
  if (total > 0xffffffff) throw new UsageError(`The archive would be ${total} bytes, over the 4 GiB a ZIP without ZIP64 can hold.`, 'Export the files one by one.');
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  let at = 0;
  const header = (sig: number, e: (typeof entries)[number], central: boolean) => {
    v.setUint32(at, sig, true);
    at += 4;
    if (central) {
      v.setUint16(at, 20, true); // made by: version 2.0
      at += 2;
    }
    v.setUint16(at, 20, true); // version needed: 2.0
    v.setUint16(at + 2, 0x0800, true); // UTF-8 names
    v.setUint16(at + 4, 0, true); // stored
    v.setUint16(at + 6, time, true);
    v.setUint16(at + 8, date, true);
    v.setUint32(at + 10, e.crc, true);
    v.setUint32(at + 14, e.bytes.length, true);
    v.setUint32(at + 18, e.bytes.length, true);
    v.setUint16(at + 22, e.name.length, true);
    v.setUint16(at + 24, 0, true); // extra field length
    at += 26;
    if (central) {
      v.setUint16(at, 0, true); // comment length
      v.setUint16(at + 2, 0, true); // disk number
      v.setUint16(at + 4, 0, true); // internal attributes
      v.setUint32(at + 6, 0, true); // external attributes
      v.setUint32(at + 10, e.offset, true);
      at += 14;
    }
    out.set(e.name, at);
    at += e.name.length;
  };
  for (const e of entries) {
    e.offset = at;
    header(0x04034b50, e, false);
    out.set(e.bytes, at);
    at += e.bytes.length;
  }
  const dirStart = at;
  for (const e of entries) header(0x02014b50, e, true);
  v.setUint32(at, 0x06054b50, true);
  v.setUint16(at + 4, 0, true);
  v.setUint16(at + 6, 0, true);
  v.setUint16(at + 8, entries.length, true);
  v.setUint16(at + 10, entries.length, true);
  v.setUint32(at + 12, at - dirStart, true);
  v.setUint32(at + 16, dirStart, true);
  v.setUint16(at + 20, 0, true);
  return out;
}
