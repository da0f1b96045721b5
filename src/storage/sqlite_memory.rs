//! SQLite's memory from the process's own allocator, with no statistics
//! kept about it.
//!
//! By default SQLite allocates from the C library's `malloc` and, to keep
//! counts of what it holds (`SQLITE_CONFIG_MEMSTATUS`, which nothing in
//! Posthorn reads), takes a mutex shared by every connection of the
//! process around each allocation and each free. The writer thread
//! allocates and frees a few hundred times per message; in a `perf`
//! profile of a B5 leg those mutexes and glibc's `malloc` took about 12 %
//! of its time. Here SQLite allocates through Rust's global allocator
//! (mimalloc in the binary: per-thread heaps, no lock on the usual path)
//! and keeps no statistics: about 8 % in the same profile, 3 % of it the
//! mutex of the page cache, which this build of SQLite shares between
//! connections (`SQLITE_ENABLE_MEMORY_MANAGEMENT`).
//!
//! Like the page cache's layer, this goes in before SQLite is first used
//! in the process ([`install`]); without it SQLite works as before.

use std::alloc::Layout;
use std::ffi::{c_int, c_void};
use std::ptr::null_mut;
#[cfg(test)]
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// Blocks handed to SQLite, counted for the test only.
#[cfg(test)]
static HANDED_OUT: AtomicU64 = AtomicU64::new(0);

/// Each block starts with its size, as SQLite's own allocator does: SQLite
/// asks how large a block is (`xSize`), and a layout is needed to free it.
/// Eight bytes keep the block after it aligned to eight, which is what
/// SQLite needs.
const HEADER: usize = 8;

/// `size` rounded up to a multiple of eight, as SQLite's own allocator
/// rounds what it is asked for.
fn rounded(size: usize) -> Option<usize> {
    size.checked_add(7).map(|n| n & !7)
}

/// The layout of a block holding `size` bytes after its header.
fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

/// Makes SQLite allocate through the global allocator and keep no memory
/// statistics, for every connection the process opens from now on; true
/// when both are in place. False when SQLite was used before in this
/// process, which leaves its defaults. Call it before any database is
/// opened, while no other thread uses SQLite (`sqlite3_config`'s rule).
pub fn install() -> bool {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(malloc),
            xFree: Some(free),
            xRealloc: Some(realloc),
            xSize: Some(size),
            xRoundup: Some(roundup),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: null_mut(),
        };
        // SAFETY: no other thread uses SQLite meanwhile (the caller's
        // part); sqlite3_config copies the methods into its configuration
        // and refuses once SQLite is initialised.
        unsafe {
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) == ffi::SQLITE_OK
                && ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods) == ffi::SQLITE_OK
        }
    })
}

/// The start of the block whose usable part begins at `p`.
///
/// # Safety
/// `p` came from [`malloc`] or [`realloc`] and was not freed.
unsafe fn block(p: *mut c_void) -> (*mut u8, usize) {
    // SAFETY: per the contract, the header sits just before `p`, aligned
    // to eight and written by `malloc` or `realloc`.
    unsafe {
        let start = p.cast::<u8>().sub(HEADER);
        (start, start.cast::<usize>().read())
    }
}

unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
    let Some(size) = usize::try_from(n).ok().and_then(rounded) else {
        return null_mut();
    };
    let Some(layout) = layout(size) else {
        return null_mut();
    };
    // SAFETY: the layout is never of size zero (it holds the header).
    let start = unsafe { std::alloc::alloc(layout) };
    if start.is_null() {
        return null_mut();
    }
    #[cfg(test)]
    HANDED_OUT.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the block holds the header and `size` bytes after it, and
    // its start is aligned to eight.
    unsafe {
        start.cast::<usize>().write(size);
        start.add(HEADER).cast()
    }
}

unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: SQLite frees only what its allocator gave it, once.
    let (start, size) = unsafe { block(p) };
    if let Some(layout) = layout(size) {
        // SAFETY: allocated with this layout, by `malloc` or `realloc`.
        unsafe { std::alloc::dealloc(start, layout) }
    }
}

unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SQLite calls this with a live block and a positive size only (its
    // own `sqlite3Realloc` turns the other cases into a malloc or a free).
    let Some(new_size) = usize::try_from(n).ok().and_then(rounded) else {
        return null_mut();
    };
    let Some(new_layout) = layout(new_size) else {
        return null_mut();
    };
    // SAFETY: `p` is a live block of ours (SQLite's contract).
    let (start, size) = unsafe { block(p) };
    let Some(old_layout) = layout(size) else {
        return null_mut();
    };
    // SAFETY: `start` was allocated with `old_layout`; the new size is not
    // zero and fits a layout of the same alignment.
    let moved = unsafe { std::alloc::realloc(start, old_layout, new_layout.size()) };
    if moved.is_null() {
        // The old block stays as it was, which is what SQLite expects.
        return null_mut();
    }
    // SAFETY: as in `malloc`.
    unsafe {
        moved.cast::<usize>().write(new_size);
        moved.add(HEADER).cast()
    }
}

unsafe extern "C" fn size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: SQLite asks only about its allocator's live blocks.
    let (_, size) = unsafe { block(p) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn roundup(n: c_int) -> c_int {
    usize::try_from(n)
        .ok()
        .and_then(rounded)
        .and_then(|n| c_int::try_from(n).ok())
        .unwrap_or(n)
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_keeps_what_it_stores_in_memory_from_the_global_allocator() {
        // Like the page cache's layer, this goes in only before SQLite's
        // first use in a process.
        if !crate::storage::in_fresh_process(
            "storage::sqlite_memory::tests::sqlite_keeps_what_it_stores_in_memory_from_the_global_allocator",
        ) {
            return;
        }
        assert!(install(), "SQLite was not used before in this process");

        // A block grown in place or moved keeps its bytes, and SQLite's
        // own size query answers from the header.
        // SAFETY: SQLite's allocation API, used on its own blocks only.
        unsafe {
            let p = ffi::sqlite3_malloc(13).cast::<u8>();
            assert!(!p.is_null());
            assert_eq!(ffi::sqlite3_msize(p.cast()), 16);
            for i in 0..13 {
                p.add(i).write(i as u8 + 1);
            }
            let q = ffi::sqlite3_realloc(p.cast(), 100_000).cast::<u8>();
            assert!(!q.is_null());
            assert_eq!(ffi::sqlite3_msize(q.cast()), 100_000);
            assert_eq!(
                std::slice::from_raw_parts(q, 13),
                (1..=13).collect::<Vec<u8>>()
            );
            ffi::sqlite3_free(q.cast());
        }

        let before = HANDED_OUT.load(Ordering::Relaxed);
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = rusqlite::Connection::open(dir.path().join("memory.db")).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; \
             CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL, data BLOB NOT NULL);",
        )
        .expect("schema");
        // Values from a byte to past a page, and strings SQLite grows as it
        // builds them (group_concat reallocates as it goes).
        let sizes: Vec<usize> = (0..400).map(|i| 1 + (i * i * 7) % 70_000).collect();
        for (i, size) in sizes.iter().enumerate() {
            conn.execute(
                "INSERT INTO t (id, body, data) VALUES (?1, ?2, ?3)",
                (
                    i as i64,
                    "é".repeat(*size / 2 + 1),
                    vec![(i % 251) as u8; *size],
                ),
            )
            .expect("insert");
        }
        for (i, size) in sizes.iter().enumerate() {
            let (body, data): (String, Vec<u8>) = conn
                .query_row(
                    "SELECT body, data FROM t WHERE id = ?1",
                    [i as i64],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .expect("read back");
            assert_eq!(body, "é".repeat(*size / 2 + 1), "row {i}");
            assert_eq!(data, vec![(i % 251) as u8; *size], "row {i}");
        }
        let joined: i64 = conn
            .query_row("SELECT length(group_concat(body, '')) FROM t", [], |row| {
                row.get(0)
            })
            .expect("group_concat");
        let expected: usize = sizes.iter().map(|size| size / 2 + 1).sum();
        assert_eq!(joined as usize, expected);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok");

        // It all came from here, and no statistics were kept.
        assert!(HANDED_OUT.load(Ordering::Relaxed) > before + 1_000);
        // SAFETY: reads a counter.
        assert_eq!(unsafe { ffi::sqlite3_memory_used() }, 0);
    }
}
