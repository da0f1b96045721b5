//! SQLite's own page cache behind a thin layer that keeps one of its
//! shortcuts from turning into a walk over the whole cache at every commit.
//!
//! When SQLite splits a B-tree page it renumbers the new pages so that
//! they lie in ascending order, swapping two pages' numbers through a
//! number no database uses (the page of the lock byte at 1 GB: 524,289
//! with 2 KB pages). The cache remembers the largest number it was ever
//! given, and at the end of every transaction drops the pages past the
//! database's end; when that largest number is far past the end, it walks
//! its whole hash table to find them, though there are none. Under B3's
//! load that walk (`pcache1TruncateUnsafe` under every COMMIT, 8,000 slots
//! and 7,700 pages) was 8 % of the writer thread's time in a `perf`
//! profile. Here the swap goes through the number just past the largest
//! one the cache holds instead, so the end of a transaction looks only at
//! the few numbers past the database's end, as SQLite means it to.
//!
//! Everything else is SQLite's default cache, called unchanged. The layer
//! goes in before SQLite is first used in the process ([`install`]);
//! without it SQLite works exactly as before.

use std::ffi::{c_int, c_uint};
use std::sync::OnceLock;
#[cfg(test)]
use std::sync::atomic::AtomicU64;

use rusqlite::ffi;

/// SQLite's lock byte, whose page no database stores anything in.
const PENDING_BYTE: c_uint = 0x4000_0000;

/// SQLite's default page cache, which this layer calls.
struct Inner(ffi::sqlite3_pcache_methods2);

// SAFETY: the methods are plain function pointers and `pArg`, which the
// default cache does not use; SQLite calls them from any thread.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

static INNER: OnceLock<Inner> = OnceLock::new();

/// Swaps that went through a stand-in number, counted for the test only.
#[cfg(test)]
static STAND_INS: AtomicU64 = AtomicU64::new(0);

/// One cache: SQLite's, and what this layer knows of the numbers in it.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    /// The page number SQLite borrows for a swap.
    lock_page: c_uint,
    /// The number the borrowed page has in the inner cache while a swap
    /// is under way; 0 when none is.
    stand_in: c_uint,
    /// No number above this is in the inner cache.
    highest: c_uint,
}

impl Cache {
    /// The number the inner cache knows `key` by.
    fn inner_key(&self, key: c_uint) -> c_uint {
        if key == self.lock_page && self.stand_in != 0 {
            self.stand_in
        } else {
            key
        }
    }
}

fn inner() -> &'static ffi::sqlite3_pcache_methods2 {
    &INNER.get().expect("installed before use").0
}

/// Puts the layer in front of SQLite's page cache for every connection
/// the process opens from now on; true when it is there (now or
/// already). False when SQLite was used before in this process, which
/// leaves its default cache in place. Call it before any database is
/// opened, while no other thread uses SQLite (`sqlite3_config`'s rule).
pub fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let mut default = ffi::sqlite3_pcache_methods2 {
            iVersion: 0,
            pArg: std::ptr::null_mut(),
            xInit: None,
            xShutdown: None,
            xCreate: None,
            xCachesize: None,
            xPagecount: None,
            xFetch: None,
            xUnpin: None,
            xRekey: None,
            xTruncate: None,
            xDestroy: None,
            xShrink: None,
        };
        // SAFETY: no other thread uses SQLite meanwhile (the caller's
        // part), and sqlite3_config copies the methods into or out of its
        // own configuration; it refuses once SQLite is initialised.
        unsafe {
            if ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, &mut default) != ffi::SQLITE_OK {
                return false;
            }
            let complete = default.xCreate.is_some()
                && default.xFetch.is_some()
                && default.xRekey.is_some()
                && default.xTruncate.is_some()
                && default.xDestroy.is_some();
            if !complete || INNER.set(Inner(default)).is_err() {
                return false;
            }
            let layer = ffi::sqlite3_pcache_methods2 {
                iVersion: default.iVersion,
                pArg: default.pArg,
                xInit: default.xInit,
                xShutdown: default.xShutdown,
                xCreate: Some(create),
                xCachesize: Some(cachesize),
                xPagecount: Some(pagecount),
                xFetch: Some(fetch),
                xUnpin: Some(unpin),
                xRekey: Some(rekey),
                xTruncate: Some(truncate),
                xDestroy: Some(destroy),
                xShrink: Some(shrink),
            };
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &layer) == ffi::SQLITE_OK
        }
    })
}

/// The layer's cache behind SQLite's handle.
///
/// # Safety
/// `cache` is a handle [`create`] returned and [`destroy`] has not freed;
/// SQLite uses a cache from one connection, one call at a time.
unsafe fn cache<'a>(cache: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    // SAFETY: per this function's contract.
    unsafe { &mut *cache.cast::<Cache>() }
}

unsafe extern "C" fn create(
    page: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(create) = inner().xCreate else {
        return std::ptr::null_mut();
    };
    // SAFETY: the default cache's own method, with SQLite's arguments.
    let made = unsafe { create(page, extra, purgeable) };
    if made.is_null() {
        return made;
    }
    let layer = Box::new(Cache {
        inner: made,
        lock_page: PENDING_BYTE / page.max(512) as c_uint + 1,
        stand_in: 0,
        highest: 0,
    });
    Box::into_raw(layer).cast()
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, pages: c_int) {
    // SAFETY: `p` is a live handle of ours (SQLite's contract).
    let c = unsafe { cache(p) };
    if let Some(f) = inner().xCachesize {
        // SAFETY: the inner handle, owned by `c`.
        unsafe { f(c.inner, pages) }
    }
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    // SAFETY: as in `cachesize`.
    inner().xPagecount.map_or(0, |f| unsafe { f(c.inner) })
}

unsafe extern "C" fn fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    let key = c.inner_key(key);
    let Some(f) = inner().xFetch else {
        return std::ptr::null_mut();
    };
    // SAFETY: as in `cachesize`.
    let page = unsafe { f(c.inner, key, create) };
    if !page.is_null() && key > c.highest {
        c.highest = key;
    }
    page
}

unsafe extern "C" fn unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    if let Some(f) = inner().xUnpin {
        // SAFETY: as in `cachesize`; `page` is one of the inner cache's.
        unsafe { f(c.inner, page, discard) }
    }
}

unsafe extern "C" fn rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    let from = c.inner_key(old);
    let to = if new == c.lock_page && c.stand_in == 0 && c.highest < c.lock_page - 1 {
        // Past everything the cache holds, so free, and close to the
        // database's end.
        c.stand_in = c.highest + 1;
        #[cfg(test)]
        STAND_INS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        c.stand_in
    } else {
        c.inner_key(new)
    };
    if old == c.lock_page {
        c.stand_in = 0;
    }
    if let Some(f) = inner().xRekey {
        // SAFETY: as in `unpin`.
        unsafe { f(c.inner, page, from, to) }
    }
    c.highest = c.highest.max(to);
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    if let Some(f) = inner().xTruncate {
        // SAFETY: as in `cachesize`.
        unsafe { f(c.inner, limit) }
    }
    if c.highest >= limit {
        c.highest = limit.saturating_sub(1);
    }
    if c.stand_in >= limit {
        c.stand_in = 0;
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: `p` came from `create`'s Box and SQLite destroys it once.
    let layer = unsafe { Box::from_raw(p.cast::<Cache>()) };
    if let Some(f) = inner().xDestroy {
        // SAFETY: the inner handle, not used after this.
        unsafe { f(layer.inner) }
    }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    if let Some(f) = inner().xShrink {
        // SAFETY: as in `cachesize`.
        unsafe { f(c.inner) }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn pages_renumbered_while_b_trees_split_keep_what_they_hold() {
        // The layer goes in only before SQLite's first use in a process.
        if !crate::storage::in_fresh_process(
            "storage::page_cache::tests::pages_renumbered_while_b_trees_split_keep_what_they_hold",
        ) {
            return;
        }
        assert!(install(), "SQLite was not used before in this process");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = rusqlite::Connection::open(dir.path().join("split.db")).expect("open");
        conn.execute_batch(
            "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; PRAGMA cache_size = -2048; \
             CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v BLOB NOT NULL); \
             CREATE INDEX t_k ON t (k);",
        )
        .expect("schema");
        // Keys anywhere in the index, and deletes that free pages for later
        // splits to reuse: the splits that renumber their new pages.
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut model: BTreeMap<i64, (String, Vec<u8>)> = BTreeMap::new();
        let mut next = 0_i64;
        for round in 0..60_i64 {
            let tx = conn.transaction().expect("begin");
            for _ in 0..200 {
                next += 1;
                let k = format!("{:016x}", rng.random::<u64>());
                let v = vec![(next % 251) as u8; rng.random_range(20..600)];
                tx.execute(
                    "INSERT INTO t (id, k, v) VALUES (?1, ?2, ?3)",
                    (next, &k, &v),
                )
                .expect("insert");
                model.insert(next, (k, v));
            }
            if round % 3 == 2 {
                let gone = round % 4;
                tx.execute("DELETE FROM t WHERE id % 4 = ?1", [gone])
                    .expect("delete");
                model.retain(|id, _| id % 4 != gone);
            }
            tx.commit().expect("commit");
        }
        assert!(
            STAND_INS.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "no split went through a stand-in number"
        );

        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity check");
        assert_eq!(check, "ok");
        let mut read = conn
            .prepare("SELECT id, k, v FROM t ORDER BY id")
            .expect("read");
        let stored: BTreeMap<i64, (String, Vec<u8>)> = read
            .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(stored.len(), model.len());
        assert!(stored == model, "a row differs from what was written");
        let mut by_key = conn.prepare("SELECT k FROM t ORDER BY k").expect("index");
        let keys: Vec<String> = by_key
            .query_map([], |row| row.get(0))
            .expect("keys")
            .collect::<rusqlite::Result<_>>()
            .expect("keys");
        let mut expected: Vec<String> = model.values().map(|(k, _)| k.clone()).collect();
        expected.sort();
        assert_eq!(keys, expected, "the index on k lost or gained entries");
    }
}
