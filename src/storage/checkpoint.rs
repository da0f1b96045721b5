//! The SQLite write-ahead log copied back into the database file, in the
//! background, on a thread and a connection of its own.
//!
//! SQLite's own checkpoint would run inside the commit that crossed 1,000
//! pages, and showed as the p99 of B1; so no connection checkpoints on its
//! own (`wal_autocheckpoint=0`) and this thread does it every
//! [`CHECKPOINT_EVERY`], with PASSIVE checkpoints that never block the
//! writer, flushing the database file after each. Under B1's half load a
//! checkpoint copies about 40 MB of log (7–11 ms of one core) and its flush
//! writes the pages it copied (6–23 ms of disk); the log's restarts are
//! planned from what the checkpoints report ([`Wal`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::domain::Error;

/// How often the SQLite write-ahead log is copied back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// At most this many bytes of frames left for the writer to copy when it
/// finishes a checkpoint itself. A checkpoint finds to copy what was
/// written while the one before it ran, so while the log is long and the
/// last one copied more than this, the background checkpoints run back to
/// back (at most [`CATCH_UP_PASSES`] a tick), each shorter than the last:
/// the writer's own checkpoint, which every accept waits for, stays short.
const WAL_RESTART_REMAINING: i64 = 1 << 20;

/// At most this many background checkpoints in a row per tick.
const CATCH_UP_PASSES: u32 = 16;

/// The SQLite write-ahead log as the last checkpoint found it, in bytes of
/// frames.
///
/// SQLite starts the log over from its beginning only when a write begins
/// after a checkpoint that copied every frame. Under steady writes the
/// background checkpoint never catches up with the frames added while it
/// runs, so the log would grow without end (gigabytes within a minute of
/// B1, every fsync paying for the growing file). So once the log is long
/// and the background checkpoints have nearly caught up with it, the writer
/// runs one checkpoint itself just before its next transaction, with
/// nothing being written meanwhile: it completes, and that transaction
/// starts the log over.
///
/// Each such restart holds every accept for the writer's checkpoint (5–20
/// ms on this project's test machine: the last frames copied and the
/// database file flushed, `BENCHMARKS.md`, B1), so the log restarts past
/// a length chosen by the operator (`sqlite_log_mb`): a longer log trades
/// disk for fewer of those pauses.
#[derive(Debug)]
pub(crate) struct Wal {
    /// Past this many bytes of frames the log is started over (see
    /// [`Wal::restart_due`]). In bytes, not frames: a database keeps the
    /// page size it was created with (see `storage::PAGE_SIZE`).
    restart_at: i64,
    /// The log's length.
    length: AtomicI64,
    /// Of that, what is copied into the database.
    copied: AtomicI64,
    /// What the last checkpoint copied: about what the next will find.
    last_copy: AtomicI64,
}

impl Wal {
    /// A log started over past `restart_at` bytes of frames.
    pub(crate) fn new(restart_at: i64) -> Wal {
        Wal {
            restart_at,
            length: AtomicI64::new(0),
            copied: AtomicI64::new(0),
            last_copy: AtomicI64::new(0),
        }
    }

    /// Past this many bytes of frames the writer finishes the checkpoint
    /// whatever is left to copy: the most the log file holds, give or take
    /// what is written before a checkpoint reports the log's length.
    pub(crate) fn bound(&self) -> i64 {
        2 * self.restart_at
    }

    /// Notes what a checkpoint reported; returns how much it copied.
    fn saw(&self, length: i64, copied: i64) -> i64 {
        let before = self.copied.swap(copied, Relaxed);
        // Fewer copied than before: the log was started over meanwhile.
        let last_copy = if copied >= before {
            copied - before
        } else {
            copied
        };
        self.last_copy.store(last_copy, Relaxed);
        self.length.store(length, Relaxed);
        last_copy
    }

    /// About how much a checkpoint would copy now.
    fn behind(&self) -> i64 {
        let uncopied = self.length.load(Relaxed) - self.copied.load(Relaxed);
        uncopied.max(self.last_copy.load(Relaxed))
    }

    /// Whether the log is long and the background checkpoints have not yet
    /// caught up with it closely enough for the writer to finish.
    fn catching_up(&self) -> bool {
        let length = self.length.load(Relaxed);
        (self.restart_at..self.bound()).contains(&length) && self.behind() > WAL_RESTART_REMAINING
    }

    /// Whether the writer should checkpoint before its next transaction;
    /// once true it is false until the next checkpoint reports.
    pub(crate) fn restart_due(&self) -> bool {
        let length = self.length.load(Relaxed);
        let due = length >= self.bound()
            || (length >= self.restart_at && self.behind() <= WAL_RESTART_REMAINING);
        if due {
            self.saw(0, 0);
        }
        due
    }
}

/// The checkpoint thread; it stops, closing its connection, when this is
/// dropped or [`Checkpointer::stop`] is called.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    /// The thread's stop signal (dropping it stops the thread) and its
    /// handle; taken by [`Checkpointer::stop`].
    running: std::sync::Mutex<Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

impl Checkpointer {
    /// Opens a connection to the database file at `path` (with the
    /// writer's settings) and starts the thread, which reports what each
    /// checkpoint found to `wal`.
    pub(crate) fn start(path: &Path, wal: Arc<Wal>) -> Result<Checkpointer, Error> {
        fn unavailable(e: impl Into<anyhow::Error>, what: &'static str) -> Error {
            Error::StorageUnavailable(e.into().context(what))
        }
        let conn = super::writer::open(path, wal.bound())
            .map_err(|e| unavailable(e, "opening the SQLite checkpoint connection"))?;
        let file = std::fs::File::open(path)
            .map_err(|e| unavailable(e, "opening the SQLite database file to flush it"))?;
        // Fixed when the database was created (the pool's first connection).
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(|e| unavailable(e, "reading the SQLite page size"))?;
        let (stop, stopped) = mpsc::channel();
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("posthorn-checkpoint".into())
            .spawn(move || {
                checkpoint_loop(&conn, page, &file, &path, &wal, &stopped);
                // The connection first, then the descriptor (see
                // `flush_in_steps`).
                drop(conn);
                drop(file);
            })
            .map_err(|e| unavailable(e, "starting the SQLite checkpoint thread"))?;
        Ok(Checkpointer {
            running: std::sync::Mutex::new(Some((stop, thread))),
        })
    }

    /// Stops the thread and waits until its connection is closed.
    pub(crate) async fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((stop, thread)) = running {
            drop(stop);
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Every [`CHECKPOINT_EVERY`] until stopped: one PASSIVE checkpoint, or
/// several in a row while the log is long and far behind, each followed by
/// a flush of the database file. `page` is the database's page size.
fn checkpoint_loop(
    conn: &rusqlite::Connection,
    page: i64,
    file: &std::fs::File,
    path: &Path,
    wal: &Wal,
    stopped: &mpsc::Receiver<()>,
) {
    let (mut checkpoints, mut flushes) = (Failures::default(), Failures::default());
    loop {
        match stopped.recv_timeout(CHECKPOINT_EVERY) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        for _ in 0..CATCH_UP_PASSES {
            let copied = match checkpoint(conn, page) {
                Ok(found) => {
                    if let Some(failures) = checkpoints.succeeded() {
                        tracing::info!(failures, database = %path.display(), "the SQLite checkpoint works again");
                    }
                    found.map_or(0, |(length, copied)| wal.saw(length, copied))
                }
                Err(error) => {
                    if let Some(failures) = checkpoints.failed(Instant::now()) {
                        tracing::warn!(%error, failures, database = %path.display(), "the SQLite checkpoint failed; it is tried again every 200 ms, and this is said again at most once a minute");
                    }
                    break;
                }
            };
            // Nothing copied, nothing to flush.
            if copied > 0 {
                match flush_in_steps(file) {
                    Ok(()) => {
                        if let Some(failures) = flushes.succeeded() {
                            tracing::info!(failures, database = %path.display(), "flushing the SQLite database file works again");
                        }
                    }
                    Err(error) => {
                        if let Some(failures) = flushes.failed(Instant::now()) {
                            tracing::warn!(%error, failures, database = %path.display(), "flushing the SQLite database file failed; it is tried again after the next checkpoint, and this is said again at most once a minute");
                        }
                    }
                }
            }
            if !wal.catching_up() {
                break;
            }
        }
    }
}

/// How often a step of the checkpoint that keeps failing is reported.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// A step of the checkpoint that may fail on every pass (a full disk makes
/// it fail five times a second): reported at its first failure, then at
/// most once every [`REPORT_EVERY`] with how many failures there were since,
/// and once more when it works again.
#[derive(Debug, Default)]
struct Failures {
    /// Failures in a row.
    streak: u64,
    /// Failures since the last report.
    unreported: u64,
    /// When the last report was made, while failing.
    reported: Option<Instant>,
}

impl Failures {
    /// Counts a failure at `now`: how many to report now (this one
    /// included), or `None` when it is too soon to report again.
    fn failed(&mut self, now: Instant) -> Option<u64> {
        self.streak += 1;
        self.unreported += 1;
        if self
            .reported
            .is_some_and(|at| now.duration_since(at) < REPORT_EVERY)
        {
            return None;
        }
        self.reported = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// Counts a success: how many failures in a row it ended, if any.
    fn succeeded(&mut self) -> Option<u64> {
        self.unreported = 0;
        self.reported = None;
        (self.streak > 0).then(|| std::mem::take(&mut self.streak))
    }
}

/// One PASSIVE checkpoint: the log's length and what of it is copied, in
/// bytes of frames of `page` bytes, or `None` when the database is not in
/// WAL mode.
fn checkpoint(conn: &rusqlite::Connection, page: i64) -> rusqlite::Result<Option<(i64, i64)>> {
    // (busy, frames in the log, frames copied); -1 when not in WAL mode.
    let (frames, copied): (i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(1)?, row.get(2)?))
        })?;
    Ok((frames >= 0).then_some((frames * page, copied * page)))
}

/// How much of the database file one step of [`flush_in_steps`] writes out.
#[cfg(target_os = "linux")]
const FLUSH_STEP: i64 = 1 << 20;

/// Writes the database file's dirty pages out a megabyte of the file at a
/// time, then flushes it. A background checkpoint copies pages into the
/// database but flushes the file only when it reaches the end of the log,
/// which under steady writes it never does; so every page it copied since
/// the log last started over waited for the writer's own checkpoint to
/// flush them, 15 ms in B1, with every accept waiting behind it. Flushed
/// here after each background checkpoint, the writer's flush holds only
/// what it copied itself. In steps, because one `fdatasync` put all of a
/// checkpoint's pages (up to 20 MB, scattered) before the device at once,
/// and the writer's next commit, whose own flush queued behind them,
/// waited 4–6 ms for it.
///
/// `file` is a descriptor of its own: closing it would release the
/// process's POSIX locks on the file, so it is closed only with the thread,
/// after the thread's connection, when the store closes; and Posthorn is
/// the one process using its SQLite database.
fn flush_in_steps(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let len = i64::try_from(file.metadata()?.len()).unwrap_or(i64::MAX);
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        let mut offset = 0;
        while offset < len {
            // SAFETY: sync_file_range reads its integer arguments; the
            // descriptor is open for as long as `file` is borrowed.
            if unsafe { libc::sync_file_range(file.as_raw_fd(), offset, FLUSH_STEP, flags) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            offset += FLUSH_STEP;
        }
    }
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_step_is_reported_at_once_then_once_a_minute_and_when_it_works_again() {
        let mut failures = Failures::default();
        assert_eq!(failures.succeeded(), None, "nothing failed");
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(failures.failed(at(0)), Some(1), "the first failure at once");
        // Five a second for a minute: silent.
        for tick in 1..300 {
            assert_eq!(failures.failed(at(tick * 200)), None, "tick {tick}");
        }
        // A minute after the last report: every failure since counted.
        assert_eq!(failures.failed(at(60_000)), Some(300));
        assert_eq!(failures.failed(at(60_200)), None);
        assert_eq!(failures.succeeded(), Some(302), "the whole run of failures");
        assert_eq!(failures.succeeded(), None);
        // A new run of failures is reported at once again.
        assert_eq!(failures.failed(at(60_600)), Some(1));
    }

    /// The restart point of these tests' logs.
    const WAL_RESTART_BYTES: i64 = 64 << 20;
    /// Their bound.
    const WAL_MAX_BYTES: i64 = 2 * WAL_RESTART_BYTES;

    /// A log `length` bytes long whose last checkpoint copied `last` and
    /// left `left` uncopied.
    fn log(length: i64, last: i64, left: i64) -> Wal {
        let wal = Wal::new(WAL_RESTART_BYTES);
        wal.saw(length, length - left - last);
        wal.saw(length, length - left);
        wal
    }

    #[test]
    fn the_log_is_started_over_once_long_and_caught_up_with_or_too_long() {
        assert!(!Wal::new(WAL_RESTART_BYTES).restart_due(), "an empty log");
        let limit = WAL_RESTART_REMAINING;
        assert!(!log(WAL_RESTART_BYTES - 1, 0, 0).restart_due(), "short");
        let far = log(WAL_RESTART_BYTES, limit + 1, 0);
        assert!(!far.restart_due(), "long, the last copy too large");
        let left = log(WAL_RESTART_BYTES, 0, limit + 1);
        assert!(!left.restart_due(), "long, too much left to copy");
        let near = log(WAL_RESTART_BYTES, limit, limit);
        assert!(near.restart_due(), "long and caught up with");
        assert!(
            !near.restart_due(),
            "once until the next checkpoint reports"
        );
        let huge = log(WAL_MAX_BYTES, WAL_MAX_BYTES, 0);
        assert!(huge.restart_due(), "too long, whatever is left");
    }

    #[test]
    fn the_background_checkpoint_catches_up_only_with_a_long_log_far_behind() {
        let limit = WAL_RESTART_REMAINING;
        assert!(
            !log(WAL_RESTART_BYTES - 1, 8 << 20, 0).catching_up(),
            "short"
        );
        assert!(
            log(WAL_RESTART_BYTES, limit + 1, 0).catching_up(),
            "a large last copy"
        );
        assert!(
            log(WAL_RESTART_BYTES, 0, limit + 1).catching_up(),
            "much left"
        );
        assert!(
            !log(WAL_RESTART_BYTES, limit, 0).catching_up(),
            "close enough"
        );
        assert!(
            !log(WAL_MAX_BYTES, 8 << 20, 0).catching_up(),
            "too long: the writer finishes now"
        );
    }

    #[test]
    fn a_log_started_over_counts_its_first_copy_from_nothing() {
        let wal = log(WAL_RESTART_BYTES, 8 << 20, 0);
        wal.saw(300, 300);
        assert_eq!(wal.behind(), 300);
    }
}
