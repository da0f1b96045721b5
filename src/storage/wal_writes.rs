//! The writer's frames go to the SQLite write-ahead log in one write per
//! commit (per 64 KiB of it) instead of two per page.
//!
//! SQLite writes each page of a commit to the log as a frame, with two
//! `pwrite` calls: the frame's 24-byte header, then the page. On this kind
//! of machine each call costs about 2 µs in the kernel whatever its size
//! (the file system's per-write bookkeeping): 17 frames of 2 KiB, a lone
//! accept's commit, took about 68 µs written that way against 6 µs in one
//! call, and every accept waits for the writer thread (BENCHMARKS.md, B1).
//!
//! This VFS is SQLite's default one, except that the log file of a
//! connection opened through it gathers consecutive writes in memory and
//! hands them to the kernel when the commit's last frame is written, in
//! one call for each 64 KiB ([`MOST_PER_WRITE`]): SQLite learns how those
//! writes went from that very call, as it did before, and only then
//! publishes the commit to other connections (in the shared index), so no
//! reader sees a frame that is not yet in the file. Before anything else
//! reaches the log file (a read, a write elsewhere, a size, a sync, a
//! truncation, a file control or its close) what is gathered goes first,
//! so the file's contents are always what SQLite wrote, in the order it
//! wrote them.
//!
//! It relies on every run of frames ending with a commit frame, which
//! holds when the connection never spills pages to the log before its
//! commit: [`open`] turns `cache_spill` off. (Frames of a transaction
//! rolled back after a spill would stay gathered, and could later be
//! written over frames another connection committed.) The price is that a
//! transaction's changed pages stay in memory until its commit, beside the
//! work that changed them, which is in memory already. Only the writer
//! thread's connection uses this VFS; every other connection uses SQLite's
//! default one.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::Path;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections ask for to use this VFS.
const NAME: &CStr = c"posthorn-gathered-log";

/// A frame's header, before its page.
const FRAME_HEADER: usize = 24;

/// The most bytes handed to the default VFS in one write: it writes at
/// most 128 KiB - 1 per call (it expects pages, 64 KiB at most) and takes a
/// longer write that comes up short for a full disk.
const MOST_PER_WRITE: usize = 64 << 10;

/// Past this many gathered bytes they go to the file at once (a commit
/// larger than this is written in several calls).
const MOST_GATHERED: usize = 4 << 20;

/// Opens the database file at `path` through this VFS, with the pages of a
/// transaction never spilled to the log before its commit.
pub(super) fn open(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = if install() {
        rusqlite::Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), NAME)?
    } else {
        rusqlite::Connection::open(path)?
    };
    conn.execute_batch("PRAGMA cache_spill = OFF")?;
    Ok(conn)
}

/// Registers the VFS (once); false when it could not be.
fn install() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are
        // thread-safe; the structure registered is leaked, so it lives
        // as long as SQLite may use it, and is a copy of the default
        // VFS with the methods this module wraps.
        unsafe {
            let inner = ffi::sqlite3_vfs_find(std::ptr::null());
            if inner.is_null() || (*inner).xOpen.is_none() {
                return false;
            }
            let mut vfs: ffi::sqlite3_vfs = std::ptr::read(inner);
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = NAME.as_ptr();
            vfs.pAppData = inner.cast();
            let Ok(header) = c_int::try_from(INNER_AT) else {
                return false;
            };
            vfs.szOsFile = header + (*inner).szOsFile;
            vfs.xOpen = Some(open_file);
            let vfs = Box::into_raw(Box::new(vfs));
            if ffi::sqlite3_vfs_register(vfs, 0) != ffi::SQLITE_OK {
                drop(Box::from_raw(vfs));
                return false;
            }
            true
        }
    })
}

/// A log file opened through this VFS: the default VFS's file after this
/// header, in the memory SQLite gives for it.
#[repr(C)]
struct LogFile {
    base: ffi::sqlite3_file,
    /// Bytes written and not yet handed to the file, which start at
    /// `gathered_at`.
    gathered: Vec<u8>,
    gathered_at: i64,
    /// The last frame header gathered is a commit frame's: its page ends
    /// the commit.
    commit_frame: bool,
}

/// Where the default VFS's file starts, past [`LogFile`], aligned for it.
const INNER_AT: usize = std::mem::size_of::<LogFile>().next_multiple_of(16);

impl LogFile {
    fn inner(&mut self) -> *mut ffi::sqlite3_file {
        // SAFETY: SQLite gave `szOsFile` bytes for this file, which leave
        // room for the default VFS's file at `INNER_AT`.
        unsafe { (self as *mut LogFile).cast::<u8>().add(INNER_AT).cast() }
    }

    fn methods(&mut self) -> &ffi::sqlite3_io_methods {
        // SAFETY: the inner file was opened (its methods set) before this
        // file's methods were, and stays open until `close`.
        unsafe { &*(*self.inner()).pMethods }
    }

    /// Hands what is gathered to the file; on failure it is dropped, and
    /// SQLite hears the error.
    fn flush(&mut self) -> c_int {
        if self.gathered.is_empty() {
            return ffi::SQLITE_OK;
        }
        let gathered = std::mem::take(&mut self.gathered);
        self.commit_frame = false;
        let write = self
            .methods()
            .xWrite
            .expect("SQLite's files can be written");
        let mut rc = ffi::SQLITE_OK;
        let mut offset = self.gathered_at;
        for chunk in gathered.chunks(MOST_PER_WRITE) {
            let amount = c_int::try_from(chunk.len()).expect("a chunk fits an int");
            // SAFETY: the inner file is open; the chunk is `amount` bytes.
            rc = unsafe { write(self.inner(), chunk.as_ptr().cast(), amount, offset) };
            #[cfg(test)]
            tests::WRITES.with(|writes| writes.set(writes.get() + 1));
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        // Keep the allocation for the next commit.
        self.gathered = gathered;
        self.gathered.clear();
        rc
    }

    fn write(&mut self, bytes: &[u8], offset: i64) -> c_int {
        let end = self.gathered_at + self.gathered.len() as i64;
        if !self.gathered.is_empty() && offset != end {
            let rc = self.flush();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if self.gathered.is_empty() {
            self.gathered_at = offset;
        }
        self.gathered.extend_from_slice(bytes);
        if bytes.len() == FRAME_HEADER {
            // Bytes 4–7 of a frame's header: the database's size in pages
            // after the commit, for a commit frame; zero for the others.
            self.commit_frame = bytes[4..8] != [0; 4];
        } else if self.commit_frame || self.gathered.len() >= MOST_GATHERED {
            return self.flush();
        }
        ffi::SQLITE_OK
    }
}

/// The file behind SQLite's handle.
///
/// # Safety
/// `file` is a log file this VFS opened and has not closed; SQLite uses a
/// file from one connection, one call at a time.
unsafe fn log<'a>(file: *mut ffi::sqlite3_file) -> &'a mut LogFile {
    // SAFETY: per this function's contract.
    unsafe { &mut *file.cast::<LogFile>() }
}

/// The methods of a log file: those that touch the file's contents hand
/// over what is gathered first; each then calls the default VFS's.
static LOG_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// Whether a file of the default VFS has every method a log file passes
/// on (checked when it is opened, so the calls below never find one
/// missing).
fn complete(methods: &ffi::sqlite3_io_methods) -> bool {
    methods.xClose.is_some()
        && methods.xRead.is_some()
        && methods.xWrite.is_some()
        && methods.xTruncate.is_some()
        && methods.xSync.is_some()
        && methods.xFileSize.is_some()
        && methods.xLock.is_some()
        && methods.xUnlock.is_some()
        && methods.xCheckReservedLock.is_some()
        && methods.xSectorSize.is_some()
        && methods.xDeviceCharacteristics.is_some()
}

unsafe extern "C" fn open_file(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls this with its VFS (whose pAppData is the default
    // VFS, set in `install`) and `szOsFile` bytes at `file`.
    unsafe {
        let inner_vfs = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        let inner_open = (*inner_vfs).xOpen.expect("checked in install");
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Any other file is the default VFS's own, in the same memory.
            return inner_open(inner_vfs, name, file, flags, out_flags);
        }
        (*file).pMethods = std::ptr::null();
        let log = file.cast::<LogFile>();
        let inner = log.cast::<u8>().add(INNER_AT).cast::<ffi::sqlite3_file>();
        let rc = inner_open(inner_vfs, name, inner, flags, out_flags);
        let opened = rc == ffi::SQLITE_OK;
        if !opened || !complete(&*(*inner).pMethods) {
            // SQLite does not close a file whose methods are unset; the
            // default VFS's file, if it set its own, is closed here.
            if !(*inner).pMethods.is_null()
                && let Some(close) = (*(*inner).pMethods).xClose
            {
                close(inner);
            }
            if !opened {
                return rc;
            }
            // Not a file this module knows how to wrap: the default VFS's
            // own, as any other file.
            return inner_open(inner_vfs, name, file, flags, out_flags);
        }
        std::ptr::write(
            log,
            LogFile {
                base: ffi::sqlite3_file {
                    pMethods: &LOG_METHODS,
                },
                gathered: Vec::new(),
                gathered_at: 0,
                commit_frame: false,
            },
        );
        ffi::SQLITE_OK
    }
}

/// Calls `then` with the default VFS's file behind `file` and its methods.
///
/// # Safety
/// As [`log`].
unsafe fn passed(
    file: *mut ffi::sqlite3_file,
    then: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> c_int,
) -> c_int {
    // SAFETY: per `log`; the inner file is open, with every method
    // `complete` asks for, until `close`.
    unsafe {
        let inner = log(file).inner();
        then(inner, &*(*inner).pMethods)
    }
}

/// Hands over what `file` gathered, then calls `then` as [`passed`] does.
///
/// # Safety
/// As [`log`].
unsafe fn flushed(
    file: *mut ffi::sqlite3_file,
    then: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> c_int,
) -> c_int {
    // SAFETY: per `log`.
    let rc = unsafe { log(file).flush() };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    // SAFETY: per this function's contract.
    unsafe { passed(file, then) }
}

// The methods below are called by SQLite with a file this VFS opened as a
// log (the contract of `log`), and pass SQLite's own arguments on; each
// method they call was checked present when the file was opened.

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once, after its last other call.
    unsafe {
        let flushed = log(file).flush();
        let closed = passed(file, |inner, m| m.xClose.expect("complete")(inner));
        std::ptr::drop_in_place(&mut log(file).gathered);
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: see above.
    unsafe {
        flushed(file, |inner, m| {
            m.xRead.expect("complete")(inner, buf, amount, offset)
        })
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let Ok(length) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // SAFETY: see above; SQLite's buffer holds `amount` bytes.
    unsafe {
        let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), length);
        log(file).write(bytes, offset)
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: see above.
    unsafe { flushed(file, |inner, m| m.xTruncate.expect("complete")(inner, size)) }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: see above.
    unsafe { flushed(file, |inner, m| m.xSync.expect("complete")(inner, flags)) }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: see above.
    unsafe { flushed(file, |inner, m| m.xFileSize.expect("complete")(inner, size)) }
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: see above.
    unsafe {
        flushed(file, |inner, m| match m.xFileControl {
            Some(control) => control(inner, op, arg),
            None => ffi::SQLITE_NOTFOUND,
        })
    }
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: see above.
    unsafe { passed(file, |inner, m| m.xLock.expect("complete")(inner, level)) }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: see above.
    unsafe { passed(file, |inner, m| m.xUnlock.expect("complete")(inner, level)) }
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: see above.
    unsafe {
        passed(file, |inner, m| {
            m.xCheckReservedLock.expect("complete")(inner, out)
        })
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: see above.
    unsafe { passed(file, |inner, m| m.xSectorSize.expect("complete")(inner)) }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: see above.
    unsafe {
        passed(file, |inner, m| {
            m.xDeviceCharacteristics.expect("complete")(inner)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Writes handed to the default VFS by this thread's log files.
        pub(super) static WRITES: Cell<u64> = const { Cell::new(0) };
    }

    fn writes() -> u64 {
        WRITES.with(Cell::get)
    }

    /// A database as the writer has it: 2 KiB pages, WAL, commits not
    /// flushed, no checkpoint of its own.
    fn writer_like(path: &Path) -> rusqlite::Connection {
        let conn = open(path).expect("open through the VFS");
        conn.execute_batch(
            "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -16384; \
             CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v BLOB NOT NULL); \
             CREATE INDEX IF NOT EXISTS t_k ON t (k);",
        )
        .expect("schema");
        conn
    }

    /// What another connection, through SQLite's default VFS, reads.
    fn seen_by_another(path: &Path) -> (i64, i64) {
        let other = rusqlite::Connection::open(path).expect("open");
        let check: String = other
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity check");
        assert_eq!(check, "ok");
        other
            .query_row(
                "SELECT count(*), coalesce(sum(length(v)), 0) FROM t",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("count")
    }

    fn insert(conn: &rusqlite::Connection, from: i64, rows: i64, size: usize) {
        let mut insert = conn
            .prepare_cached("INSERT INTO t (id, k, v) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        for id in from..from + rows {
            let key = format!("key-{}", id * 7919 % 10_007);
            insert
                .execute(rusqlite::params![id, key, vec![(id % 251) as u8; size]])
                .expect("insert");
        }
    }

    #[test]
    fn a_commit_reaches_the_log_in_one_write_and_is_read_at_once_elsewhere() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.db");
        let mut conn = writer_like(&path);
        let spill: i64 = conn
            .query_row("PRAGMA cache_spill", [], |row| row.get(0))
            .expect("cache_spill");
        assert_eq!(spill, 0, "frames are gathered only when nothing spills");

        let mut stored = (0, 0);
        for round in 0..20 {
            let before = writes();
            let tx = conn.transaction().expect("begin");
            // Rows of 700 bytes over 2 KiB pages, and their index: a
            // dozen or more pages, as a lone accept's commit changes.
            insert(&tx, round * 30, 30, 700);
            tx.commit().expect("commit");
            assert_eq!(
                writes() - before,
                1,
                "round {round}: the commit's frames went to the log in one write"
            );
            stored = (stored.0 + 30, stored.1 + 30 * 700);
            assert_eq!(seen_by_another(&path), stored, "round {round}");
        }
    }

    #[test]
    fn large_undone_and_interleaved_commits_and_a_restarted_log_keep_every_row() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.db");
        let mut conn = writer_like(&path);

        // Larger than what is gathered before it goes out, and than one
        // write of the default VFS.
        let before = writes();
        let tx = conn.transaction().expect("begin");
        insert(&tx, 0, 600, 10_000);
        tx.commit().expect("commit");
        assert!(
            writes() - before > 1,
            "a large commit goes out in several writes"
        );
        let mut stored = (600, 600 * 10_000);
        assert_eq!(seen_by_another(&path), stored);

        // Undone: nothing of it reaches the log.
        let tx = conn.transaction().expect("begin");
        insert(&tx, 600, 100, 1_000);
        tx.rollback().expect("rollback");
        assert_eq!(seen_by_another(&path), stored);

        // Another connection appends its own commit to the same log; ours
        // then writes after it.
        let other = rusqlite::Connection::open(&path).expect("open");
        insert(&other, 10_000, 50, 500);
        stored = (stored.0 + 50, stored.1 + 50 * 500);
        insert(&conn, 700, 10, 900);
        stored = (stored.0 + 10, stored.1 + 10 * 900);
        assert_eq!(seen_by_another(&path), stored);

        // Copied back and started over: the next commit writes the log's
        // header and its frames from the start.
        let (busy, _, _): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .expect("checkpoint");
        assert_eq!(busy, 0, "the checkpoint completed");
        drop(other);
        for round in 0..5 {
            insert(&conn, 1_000 + round * 20, 20, 1_500);
            stored = (stored.0 + 20, stored.1 + 20 * 1_500);
            assert_eq!(seen_by_another(&path), stored, "round {round}");
        }
        drop(conn);
        assert_eq!(seen_by_another(&path), stored, "after the last close");
    }
}
