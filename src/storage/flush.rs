//! Durability of the SQLite writer's commits, flushed off its path.
//!
//! The writer connection runs with `synchronous=NORMAL`: its COMMIT writes
//! the transaction's frames to the write-ahead log and returns without
//! flushing the file, so the writer can begin its next transaction while
//! the device works. Threads of their own flush the log ([`Flusher`]);
//! every commit that answers somebody waits for a flush that began after
//! its COMMIT returned, so what is acknowledged is exactly as durable as
//! with `synchronous=FULL`, whose COMMIT flushes the same file before it
//! returns. Flushes are shared: one flush covers every commit made before
//! it began. Two may run at once, so a commit made during a flush does not
//! wait for that flush to end before its own begins: under B1's half load
//! that took the p99 of an accept's wait for durability from about 4 ms to
//! about 2.5 ms.
//!
//! A failed flush leaves the kernel free to have dropped the pages it could
//! not write, so a later flush that succeeds proves nothing about them:
//! after one failure every wait fails (STORAGE_UNAVAILABLE) until the
//! server is restarted and SQLite recovers the log from the file.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::watch;

use crate::domain::{Error, Result};

/// How far the flushes have come.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Every ticket up to this one is durable.
    through: u64,
    /// Set by the first failed flush; every wait fails from then on.
    failed: Option<Arc<str>>,
}

#[derive(Debug, Default)]
struct Requests {
    /// The newest ticket handed out.
    newest: u64,
    /// The newest ticket a flush has begun for.
    begun: u64,
    stop: bool,
}

/// Flushes that may run at once: with two, a commit's flush starts as soon
/// as the commit is made, whatever the other is doing; three were not
/// tried (one core each is all this machine has to give).
const FLUSHING_THREADS: usize = 2;

/// What runs once a ticket is durable (see [`Flusher::when_durable`]).
type Then = Box<dyn FnOnce() + Send>;

struct Shared {
    requests: Mutex<Requests>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
    /// Work waiting for its ticket to be durable, in ticket order.
    then: Mutex<VecDeque<(u64, Then)>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("requests", &self.requests)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

/// Flushes the write-ahead log of one SQLite database on threads of its
/// own; stops when the last handle is dropped.
#[derive(Debug)]
pub(crate) struct Flusher {
    shared: Arc<Shared>,
}

impl Flusher {
    /// Starts the flushing thread for the database file `database`; its
    /// log is the file beside it with `-wal` appended.
    pub(crate) fn start(database: PathBuf) -> std::io::Result<Flusher> {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Requests::default()),
            wake: Condvar::new(),
            progress: watch::Sender::new(Progress::default()),
            then: Mutex::new(VecDeque::new()),
        });
        let mut log = database.clone().into_os_string();
        log.push("-wal");
        let log = PathBuf::from(log);
        for _ in 0..FLUSHING_THREADS {
            let (thread, database, log) = (shared.clone(), database.clone(), log.clone());
            std::thread::Builder::new()
                .name("posthorn-flush".into())
                .spawn(move || flush_loop(&thread, &database, &log))?;
        }
        Ok(Flusher { shared })
    }

    /// A ticket for everything committed before this call: [`Flusher::wait`]
    /// returns once a flush that began after it has finished.
    pub(crate) fn ticket(&self) -> u64 {
        let ticket = {
            let mut requests = lock(&self.shared.requests);
            requests.newest += 1;
            requests.newest
        };
        self.shared.wake.notify_one();
        ticket
    }

    /// Runs `then` on a flushing thread once everything committed before
    /// this call is durable, after whatever was handed over before it; it
    /// never runs when the flush fails. `then` must be short: the next
    /// flush's waiters wait for it.
    pub(crate) fn when_durable(&self, then: impl FnOnce() + Send + 'static) {
        // The ticket is taken under the queue's lock, so the queue stays in
        // ticket order.
        let mut queue = lock(&self.shared.then);
        if self.shared.progress.borrow().failed.is_none() {
            queue.push_back((self.ticket(), Box::new(then)));
        }
    }

    /// Why flushing failed, once it has: nothing is acknowledged after.
    pub(crate) fn failure(&self) -> Option<Arc<str>> {
        self.shared.progress.borrow().failed.clone()
    }

    /// Resolves with the cause once a flush has failed; never while they
    /// succeed.
    pub(crate) async fn failed(&self) -> Arc<str> {
        let mut progress = self.shared.progress.subscribe();
        let failed = progress
            .wait_for(|p| p.failed.is_some())
            .await
            .ok()
            .and_then(|reached| reached.failed.clone());
        match failed {
            Some(cause) => cause,
            // The flushing threads are gone: no flush can fail any more.
            None => std::future::pending().await,
        }
    }

    /// Waits until `ticket` is durable.
    pub(crate) async fn wait(&self, ticket: u64) -> Result<()> {
        let mut progress = self.shared.progress.subscribe();
        let reached = progress
            .wait_for(|p| p.failed.is_some() || p.through >= ticket)
            .await
            .map_err(|_| unavailable("the flushing thread has stopped"))?;
        match &reached.failed {
            Some(error) => Err(unavailable(error)),
            None => Ok(()),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        lock(&self.shared.requests).stop = true;
        self.shared.wake.notify_all();
    }
}

/// A lock of the flusher's; nothing panics while holding one, so a
/// poisoned lock still holds consistent state.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unavailable(cause: &str) -> Error {
    Error::StorageUnavailable(anyhow::anyhow!(
        "flushing the SQLite write-ahead log failed: {cause}"
    ))
}

/// Waits for tickets no flush has begun for, flushes the log once for all
/// handed out so far, and reports them durable. Several threads run this:
/// a commit made while one flush is under way gets a flush of its own at
/// once instead of waiting for that one to end first. A flush covers every
/// ticket handed out before it began, whichever flush ends first.
fn flush_loop(shared: &Shared, database: &std::path::Path, log: &std::path::Path) {
    loop {
        let target = {
            let mut requests = lock(&shared.requests);
            while requests.newest == requests.begun && !requests.stop {
                requests = shared
                    .wake
                    .wait(requests)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if requests.newest == requests.begun {
                return;
            }
            requests.begun = requests.newest;
            requests.newest
        };
        match flush(database, log) {
            Ok(()) => {
                shared.progress.send_if_modified(|p| {
                    let further = target > p.through;
                    p.through = p.through.max(target);
                    further
                });
                // Run under the lock, so that what the other thread finds
                // due after its flush runs after this, in ticket order.
                let mut then = lock(&shared.then);
                while then.front().is_some_and(|(ticket, _)| *ticket <= target) {
                    if let Some((_, run)) = then.pop_front() {
                        run();
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, log = %log.display(), "flushing the SQLite write-ahead log failed; nothing more is acknowledged until the server restarts");
                let message: Arc<str> = Arc::from(error.to_string());
                shared
                    .progress
                    .send_modify(|p| p.failed = Some(message.clone()));
                lock(&shared.then).clear();
                return;
            }
        }
    }
}

/// Flushes the log file. Opened anew each time: SQLite deletes the log
/// when its last connection closes and creates a new one later, and an
/// old descriptor would flush the deleted file. With no log, everything
/// committed was copied into the database file (and flushed) when the last
/// connection closed; the database file is flushed once more all the same.
fn flush(database: &std::path::Path, log: &std::path::Path) -> std::io::Result<()> {
    match std::fs::File::open(log) {
        Ok(file) => file.sync_data(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::File::open(database)?.sync_data()
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ticket_is_durable_once_a_flush_after_it_finished() {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = dir.path().join("posthorn.db");
        std::fs::write(&database, b"").expect("database file");
        std::fs::write(dir.path().join("posthorn.db-wal"), b"frames").expect("log file");
        let flusher = Flusher::start(database).expect("flusher");
        let (first, second) = (flusher.ticket(), flusher.ticket());
        assert!(second > first, "tickets are handed out in order");
        flusher.wait(second).await.expect("durable");
        flusher
            .wait(first)
            .await
            .expect("an older ticket is durable too");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_ticket_of_many_committers_at_once_becomes_durable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = dir.path().join("posthorn.db");
        std::fs::write(&database, b"").expect("database file");
        std::fs::write(dir.path().join("posthorn.db-wal"), b"frames").expect("log file");
        let flusher = Arc::new(Flusher::start(database).expect("flusher"));
        let committers: Vec<_> = (0..64)
            .map(|_| {
                let flusher = flusher.clone();
                tokio::spawn(async move {
                    for _ in 0..20 {
                        flusher.wait(flusher.ticket()).await?;
                    }
                    Ok::<_, Error>(())
                })
            })
            .collect();
        let all = async {
            for committer in committers {
                committer.await.expect("committer").expect("durable");
            }
        };
        // A lost wake-up would leave a committer waiting for ever.
        tokio::time::timeout(std::time::Duration::from_secs(60), all)
            .await
            .expect("every committer was answered");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_waiting_for_durability_runs_once_flushed_in_the_order_handed_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = dir.path().join("posthorn.db");
        std::fs::write(&database, b"").expect("database file");
        std::fs::write(dir.path().join("posthorn.db-wal"), b"frames").expect("log file");
        let flusher = Flusher::start(database).expect("flusher");
        let (ran, mut order) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..500 {
            let ran = ran.clone();
            flusher.when_durable(move || ran.send(n).expect("receiver"));
            if n % 7 == 0 {
                // Interleaved with committers that only wait.
                flusher.wait(flusher.ticket()).await.expect("durable");
            }
        }
        for n in 0..500 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(60), order.recv())
                .await
                .expect("every handed-over piece ran");
            assert_eq!(next, Some(n));
        }
    }

    #[tokio::test]
    async fn nothing_waiting_for_a_failed_flush_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let flusher = Flusher::start(dir.path().join("gone").join("posthorn.db")).expect("flusher");
        let (ran, mut order) = tokio::sync::mpsc::unbounded_channel::<()>();
        flusher.when_durable(move || ran.send(()).expect("receiver"));
        assert!(flusher.wait(flusher.ticket()).await.is_err());
        assert!(order.try_recv().is_err(), "ran after a failed flush");
    }

    #[tokio::test]
    async fn without_a_log_the_database_file_is_flushed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = dir.path().join("posthorn.db");
        std::fs::write(&database, b"").expect("database file");
        let flusher = Flusher::start(database).expect("flusher");
        flusher.wait(flusher.ticket()).await.expect("durable");
    }

    #[tokio::test]
    async fn after_a_failed_flush_every_wait_fails() {
        let dir = tempfile::tempdir().expect("temp dir");
        let flusher = Flusher::start(dir.path().join("gone").join("posthorn.db")).expect("flusher");
        for _ in 0..2 {
            let error = flusher.wait(flusher.ticket()).await.unwrap_err();
            assert!(
                matches!(error, Error::StorageUnavailable(_)),
                "retryable, and never an acknowledgement: {error:?}"
            );
            let cause = std::error::Error::source(&error).map(ToString::to_string);
            assert!(
                cause
                    .as_deref()
                    .is_some_and(|c| c.contains("write-ahead log")),
                "{cause:?}"
            );
        }
    }
}
