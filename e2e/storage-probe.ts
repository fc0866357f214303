// What a page has kept in the browser, read from inside the page: every IndexedDB record of every
// database, localStorage, sessionStorage and Cache Storage. The e2e tier uses it to check that a
// token was not written anywhere and that the model cache holds a whole model or none.
import type { Page } from 'playwright/test';

export interface IdbRecord {
  db: string;
  store: string;
  key: string;
  /** Objects as JSON; bytes as base64 (so Node can check them with the site's own readers). */
  json?: string;
  base64?: string;
}

/** Every IndexedDB record of the page's origin. With `values` false only keys are returned. */
export async function idbRecords(page: Page, values = true): Promise<IdbRecord[]> {
  return page.evaluate(async (withValues) => {
    const req = <T>(r: IDBRequest<T>) => new Promise<T>((resolve, reject) => {
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const b64 = (u: Uint8Array) => {
      let s = '';
      for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000));
      return btoa(s);
    };
    const out: IdbRecord[] = [];
    for (const info of await indexedDB.databases()) {
      if (!info.name) continue;
      const db = await req(indexedDB.open(info.name));
      for (const store of Array.from(db.objectStoreNames)) {
        const os = db.transaction(store).objectStore(store);
        const keys = await req(os.getAllKeys());
        const vals = withValues ? await req(os.getAll()) : [];
        keys.forEach((k, i) => {
          const v = vals[i];
          const rec: IdbRecord = { db: info.name!, store, key: String(k) };
          if (withValues) {
            if (v instanceof Uint8Array) rec.base64 = b64(v);
            else if (v instanceof ArrayBuffer) rec.base64 = b64(new Uint8Array(v));
            else rec.json = JSON.stringify(v);
          }
          out.push(rec);
        });
      }
      db.close();
    }
    return out;
  }, values);
}

/** Where `needle` occurs in anything the page's origin stores: IndexedDB (keys, objects, bytes as
 *  Latin-1), localStorage, sessionStorage, and Cache Storage (request URLs and response bodies). */
export async function findStored(page: Page, needle: string): Promise<string[]> {
  return page.evaluate(async (n) => {
    const hits: string[] = [];
    const req = <T>(r: IDBRequest<T>) => new Promise<T>((resolve, reject) => {
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const latin1 = (u: Uint8Array) => {
      let s = '';
      for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000));
      return s;
    };
    const has = (v: unknown): boolean => {
      if (typeof v === 'string') return v.includes(n);
      if (v instanceof Uint8Array) return latin1(v).includes(n);
      if (v instanceof ArrayBuffer) return latin1(new Uint8Array(v)).includes(n);
      if (ArrayBuffer.isView(v)) return latin1(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)).includes(n);
      if (v instanceof Map) return [...v].some(([k, x]) => has(k) || has(x));
      if (typeof v === 'object' && v !== null) return Object.entries(v).some(([k, x]) => has(k) || has(x));
      return false;
    };
    const dbs = await indexedDB.databases();
    for (const info of dbs) {
      if (!info.name) continue;
      const db = await req(indexedDB.open(info.name));
      for (const store of Array.from(db.objectStoreNames)) {
        const os = db.transaction(store).objectStore(store);
        const [keys, vals] = [await req(os.getAllKeys()), await req(os.getAll())];
        keys.forEach((k, i) => {
          if (has(String(k)) || has(vals[i])) hits.push(`IndexedDB ${info.name}/${store}/${String(k)}`);
        });
      }
      db.close();
    }
    for (const [name, s] of [['localStorage', localStorage], ['sessionStorage', sessionStorage]] as const) {
      for (let i = 0; i < s.length; i++) {
        const k = s.key(i)!;
        if (k.includes(n) || (s.getItem(k) ?? '').includes(n)) hits.push(`${name} ${k}`);
      }
    }
    for (const name of await caches.keys()) {
      const c = await caches.open(name);
      for (const r of await c.keys()) {
        const res = await c.match(r);
        const body = res ? latin1(new Uint8Array(await res.arrayBuffer())) : '';
        if (r.url.includes(n) || body.includes(n) || [...r.headers.values()].some((h) => h.includes(n))) hits.push(`Cache Storage ${name} ${r.url}`);
      }
    }
    // Proof the probe looked: how many places it read.
    hits.push(`(read ${dbs.length} IndexedDB databases, ${localStorage.length + sessionStorage.length} web storage items, ${(await caches.keys()).length} caches)`);
    return hits;
  }, needle);
}
