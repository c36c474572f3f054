// History kept in this browser (IndexedDB): one record per image, { blob, params, at }.
// Only the newest KEEP are kept and images over MAX_BYTES are not kept at all, so the browser's
// quota is never the limit. Without IndexedDB (private mode and the like) there is no history
// and no error.

const DB_NAME = 'easel-history';
const KEEP = 40;
const MAX_BYTES = 4 * 1024 * 1024;

let dbPromise = null;
function db() {
  dbPromise ??= new Promise((resolve) => {
    let open;
    try { open = indexedDB.open(DB_NAME, 1); } catch { resolve(null); return; }
    open.onupgradeneeded = () => open.result.createObjectStore('images', { autoIncrement: true });
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => resolve(null);
  });
  return dbPromise;
}

function store(mode, work) {
  return db().then((d) => d && new Promise((resolve) => {
    const tx = d.transaction('images', mode);
    const result = work(tx.objectStore('images'));
    tx.oncomplete = () => resolve(result.result ?? result);
    tx.onerror = tx.onabort = () => resolve(null);
  }));
}

// Keeps one gallery item (not uploads: the user has those); sets item.key for a later delete.
export async function remember(item) {
  if (!item || item.blob.size > MAX_BYTES || item.params.kind === 'upload') return;
  item.key = await store('readwrite', (os) => os.add({ blob: item.blob, params: item.params,
    at: Date.now() }));
  const keys = await store('readonly', (os) => os.getAllKeys());
  if (Array.isArray(keys) && keys.length > KEEP) {
    const old = keys.slice(0, keys.length - KEEP);
    await store('readwrite', (os) => os.delete(IDBKeyRange.upperBound(old[old.length - 1])));
  }
}

export async function forget(key) {
  if (key !== null && key !== undefined) await store('readwrite', (os) => os.delete(key));
}

// Every kept record with its key, oldest first.
export async function recall() {
  const records = await store('readonly', (os) => os.getAll());
  const keys = await store('readonly', (os) => os.getAllKeys());
  if (!Array.isArray(records) || !Array.isArray(keys)) return [];
  return records.map((record, i) => ({ ...record, key: keys[i] }));
}

export const clearAll = () => store('readwrite', (os) => os.clear());
