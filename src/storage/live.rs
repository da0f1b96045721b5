//! Events handed to this process's watchers as they become durable, on
//! SQLite.
//!
//! Every watcher used to read the events table again after every commit
//! that wrote events: under B5's load that was one more query per commit
//! and watcher, on a pooled connection whose cache the writer had just made
//! stale, between a delivery's record and its event on the stream (p50
//! 0.5 ms, p99 4 ms). On SQLite one process writes, and every commit it
//! makes that writes events either passes through the writer thread
//! (`writer`) or is followed by one (`Store::events_written`): after each,
//! the thread reads the events committed since the last (from its warm
//! cache) and hands them, once the flush covering them ended, to every
//! watcher at once ([`Published`]); only while somebody watches. The worker
//! pool's wake-up comes the same way, after the same flush.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::{broadcast, watch};

use super::entities::events;
use super::flush::Flusher;
use super::writer::sqlite_error;
use crate::domain::Result;
use crate::domain::watch::Published;

/// Runs of events kept for a watcher that has not taken them yet; one that
/// falls further behind reads the table instead.
const KEPT_RUNS: usize = 256;

/// At most this many events in one run; a longer one is handed over as an
/// empty run that sends its watchers to the table.
const MAX_RUN: i64 = 4096;

/// The newest event in the database, 0 when there is none.
pub(super) const NEWEST_EVENT: &str = "SELECT COALESCE(MAX(id), 0) FROM events";

/// What readers of the events take from the publisher: the runs it hands
/// over, and how far the table may be read.
#[derive(Clone, Debug)]
pub(super) struct Readers {
    runs: broadcast::Sender<Arc<Published>>,
    on_disk: OnDisk,
}

impl Readers {
    /// The runs handed over from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.runs.subscribe()
    }

    /// The newest event a reader of the table may see.
    pub(super) fn newest_on_disk(&self) -> i64 {
        self.on_disk.newest()
    }
}

/// What the writer thread hands committed events over with.
pub(super) struct Publisher {
    runs: broadcast::Sender<Arc<Published>>,
    signal: Arc<watch::Sender<u64>>,
    flusher: Arc<Flusher>,
    /// The newest event at the last commit; `None` before the first, or
    /// when it could not be read.
    newest: Option<i64>,
    /// The newest event known to be durable (see [`OnDisk`]).
    on_disk: OnDisk,
}

/// The newest event known to be durable: what readers of the events table
/// may see. A commit is visible to every connection as soon as it is made,
/// before the flush that makes it durable; an event read in between, and
/// lost with the log's tail to a power cut, would have handed a watcher a
/// cursor that the next commit after the restart gives to another event.
#[derive(Clone, Debug)]
pub(super) struct OnDisk(Arc<AtomicI64>);

impl OnDisk {
    /// Starts from `newest`, the newest event when the server started
    /// (after a flush: see `Store::connect`).
    pub(super) fn new(newest: i64) -> OnDisk {
        OnDisk(Arc::new(AtomicI64::new(newest)))
    }

    fn newest(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }

    fn reached(&self, newest: i64) {
        self.0.fetch_max(newest, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("newest", &self.newest)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub(super) fn new(
        signal: Arc<watch::Sender<u64>>,
        flusher: Arc<Flusher>,
        on_disk: OnDisk,
    ) -> Publisher {
        Publisher {
            runs: broadcast::Sender::new(KEPT_RUNS),
            signal,
            flusher,
            newest: None,
            on_disk,
        }
    }

    /// The flusher whose flushes make the writer's commits durable.
    pub(super) fn flusher(&self) -> &Flusher {
        &self.flusher
    }

    /// The handle readers of the events take.
    pub(super) fn readers(&self) -> Readers {
        Readers {
            runs: self.runs.clone(),
            on_disk: self.on_disk.clone(),
        }
    }

    /// Called on the writer thread after each commit that kept writes.
    /// When events were committed since the last call (by this commit, or
    /// by another connection before it), reads them if somebody watches,
    /// and once they are durable hands them over and wakes the workers.
    /// Event ids grow in commit order (one writer at a time, and
    /// `AUTOINCREMENT`), so the events since the last call are exactly
    /// those above the newest it saw.
    pub(super) fn committed(&mut self, conn: &rusqlite::Connection) {
        let newest = match newest_event(conn) {
            Ok(newest) => newest,
            Err(error) => {
                tracing::warn!(
                    error = error.chain(),
                    "reading the newest event failed; watchers read the table instead"
                );
                self.newest = None;
                self.when_durable(None, None);
                return;
            }
        };
        let last = self.newest.replace(newest);
        if last == Some(newest) {
            // No events: the workers have nothing new either.
            return;
        }
        let run = (self.runs.receiver_count() > 0).then(|| run_since(conn, last, newest));
        self.when_durable(Some(newest), run);
    }

    /// Once durable: lets readers see up to `newest`, hands `run` over, and
    /// wakes the workers.
    fn when_durable(&self, newest: Option<i64>, run: Option<Published>) {
        let (runs, signal, durable) =
            (self.runs.clone(), self.signal.clone(), self.on_disk.clone());
        let run = run.map(Arc::new);
        self.flusher.when_durable(move || {
            // First: a watcher that missed a run reads the table up to it.
            if let Some(newest) = newest {
                durable.reached(newest);
            }
            if let Some(run) = run {
                // Nobody left to take it is fine.
                let _ = runs.send(run);
            }
            signal.send_modify(|n| *n = n.wrapping_add(1));
        });
    }
}

/// The events above `last` up to `newest`; when there is no `last`, too
/// many to hand over, or they cannot be read, the run that carries nothing
/// and sends every watcher behind `newest` to the table.
fn run_since(conn: &rusqlite::Connection, last: Option<i64>, newest: i64) -> Published {
    let Some(after) = last.filter(|after| *after <= newest && newest - after <= MAX_RUN) else {
        return everything_up_to(newest);
    };
    read_run(conn, after, newest).unwrap_or_else(|error| {
        tracing::warn!(
            error = error.chain(),
            "reading the events just committed failed; watchers read the table instead"
        );
        everything_up_to(newest)
    })
}

/// The run that carries nothing and sends every watcher behind `newest` to
/// the table.
fn everything_up_to(newest: i64) -> Published {
    Published {
        after: newest,
        through: newest,
        events: Vec::new(),
    }
}

fn newest_event(conn: &rusqlite::Connection) -> Result<i64> {
    conn.prepare_cached(NEWEST_EVENT)
        .and_then(|mut s| s.query_row([], |row| row.get(0)))
        .map_err(sqlite_error)
}

/// The events with a cursor above `after` and at most `through`.
fn read_run(conn: &rusqlite::Connection, after: i64, through: i64) -> Result<Published> {
    let mut statement = conn
        .prepare_cached(
            "SELECT id, account_id, message_id, recipient, event_type, status, details, \
             occurred_at FROM events WHERE id > ?1 AND id <= ?2 ORDER BY id",
        )
        .map_err(sqlite_error)?;
    let rows = statement
        .query_map([after, through], |row| {
            Ok(events::Model {
                id: row.get(0)?,
                account_id: row.get(1)?,
                message_id: row.get(2)?,
                recipient: row.get(3)?,
                event_type: row.get(4)?,
                status: row.get(5)?,
                details: row.get(6)?,
                occurred_at: row.get(7)?,
            })
        })
        .map_err(sqlite_error)?;
    let mut events = Vec::new();
    for row in rows {
        let row = row.map_err(sqlite_error)?;
        let account_id = row.account_id.clone();
        events.push((account_id, super::messages::event_from(row)?));
    }
    Ok(Published {
        after,
        through,
        events,
    })
}
