//! Group commit: one task gathers the accepts waiting to be stored into
//! batches, each written in one transaction, and each caller is answered
//! only once its batch is durable. Under load many accepts share one
//! fsync; alone, an accept waits for nobody.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::domain::Durable;
use crate::domain::email::EmailAddress;
use crate::domain::error::{Error, Result};
use crate::domain::messages::{Message, Recipient, Status};
use crate::domain::suppressions::Suppression;

/// The most messages one transaction carries; a job is never split.
pub const MAX_BATCH_MESSAGES: usize = 512;

/// How many accepts may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

/// How many batches may be on their way to the store at once: one being
/// built while the one before it is written, and one more waiting, so the
/// store is never idle for want of a batch (building a batch's statements
/// is a tenth of an accept's CPU). The store runs what arrives together
/// as one transaction where it can. On SQLite a batch keeps its turn until
/// it is durable (the writer thread answers it from the flush): what
/// arrives meanwhile joins fewer, larger batches, and fewer transactions
/// and flushes carry the same accepts.
const IN_FLIGHT: usize = 3;

/// An idempotency record as stored: the key, what it was used for and the
/// response to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub account_id: String,
    pub key: String,
    /// The RPC, for example "SendEmail".
    pub method: String,
    /// Digest of the canonical request.
    pub fingerprint: String,
    /// The response to replay, in the use case's own encoding.
    pub response: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One caller's accept: stored entirely or not at all.
#[derive(Clone, Debug)]
pub struct CommitJob {
    pub account_id: String,
    /// Claimed in the same transaction; the job is skipped when another
    /// live record holds the key.
    pub idempotency: Option<IdempotencyRecord>,
    /// Messages with their recipients, attachments and first events.
    pub messages: Vec<Message>,
    /// The server's default daily recipient quota (`None` is unlimited);
    /// the store applies the account's own quota when it has one.
    pub daily_quota: Option<u64>,
    /// The UTC day (days since the epoch) the recipients count against.
    pub day: i64,
    /// When the job was accepted: suppressions that expired before it no
    /// longer apply.
    pub accepted_at: DateTime<Utc>,
}

impl CommitJob {
    /// Recipients the job counts against the quota: those it will send
    /// to (a suppressed one is not).
    pub fn recipients(&self) -> u64 {
        self.unsuppressed().count() as u64
    }

    /// The address keys of the recipients not yet found suppressed: the
    /// store checks them against the account's suppression list in the
    /// transaction that stores the job.
    pub fn unchecked_keys(&self) -> impl Iterator<Item = String> + '_ {
        self.unsuppressed()
            .map(|r| EmailAddress::key_of_stored(&r.email))
    }

    /// The recipients of the job's messages not (yet) suppressed.
    fn unsuppressed(&self) -> impl Iterator<Item = &Recipient> {
        self.messages
            .iter()
            .flat_map(|m| &m.recipients)
            .filter(|r| r.status != Status::Suppressed)
    }
}

/// What became of a job in its transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Stored and durable.
    Committed,
    /// Another live idempotency record holds the key; nothing was stored.
    KeyTaken,
    /// The account's daily quota (this many recipients) has no room for the
    /// job; nothing was stored.
    OverQuota(u64),
    /// Recipients of the job are on the account's suppression list (these,
    /// by address key); nothing was stored. The caller marks them and
    /// commits again.
    Suppressed(HashMap<String, Suppression>),
}

/// What the accept path needs from storage.
pub trait AcceptStore: Send + Sync + 'static {
    /// Stores `jobs` in one transaction and says what became of each, in
    /// order, once it has committed; nobody is answered before the
    /// returned [`Durable`] resolves, while the next transaction may
    /// already begin. Several calls may run at once (see `IN_FLIGHT`).
    /// An error means nothing of any job was stored.
    fn commit_jobs(
        &self,
        jobs: &[CommitJob],
    ) -> impl Future<Output = Result<(Vec<JobOutcome>, Durable)>> + Send;
    /// The live (unexpired at `now`) record of `key` in the account.
    fn idempotency_record(
        &self,
        account_id: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>>> + Send;
    /// Deletes records that expired before `now`; returns how many.
    fn purge_idempotency(&self, now: DateTime<Utc>) -> impl Future<Output = Result<u64>> + Send;
}

type Pending = (CommitJob, oneshot::Sender<Result<(JobOutcome, CommitJob)>>);

/// The handle callers use; cheap to clone.
#[derive(Clone, Debug)]
pub struct Committer {
    queue: mpsc::Sender<Pending>,
}

impl Committer {
    /// Starts the writer task over `store`. It ends when every handle is gone.
    pub fn start<S: AcceptStore>(store: S) -> Committer {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(store, rx));
        Committer { queue }
    }

    /// Stores `job`; returns once its transaction committed (or failed),
    /// with the job handed back.
    pub async fn commit(&self, job: CommitJob) -> Result<(JobOutcome, CommitJob)> {
        let (tx, rx) = oneshot::channel();
        let stopped = || Error::StorageUnavailable(anyhow::anyhow!("the writer has stopped"));
        self.queue.send((job, tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn write_loop<S: AcceptStore>(store: S, mut rx: mpsc::Receiver<Pending>) {
    let store = Arc::new(store);
    let turns = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut held: Option<Pending> = None;
    loop {
        let first = match held.take() {
            Some(pending) => pending,
            None => match rx.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        // Whatever arrives while every turn is taken joins this batch.
        let turn = turns
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut size = first.0.messages.len();
        let mut batch = vec![first];
        // Everything already waiting joins, up to the batch bound; no timer:
        // the wait is the batches ahead.
        while size < MAX_BATCH_MESSAGES {
            match rx.try_recv() {
                Ok(pending) if size + pending.0.messages.len() > MAX_BATCH_MESSAGES => {
                    held = Some(pending);
                    break;
                }
                Ok(pending) => {
                    size += pending.0.messages.len();
                    batch.push(pending);
                }
                Err(_) => break,
            }
        }
        tokio::spawn(commit_batch(store.clone(), batch, turn));
    }
}

/// Commits one batch, gives its turn back as soon as the store returns
/// (when the transaction has ended, so the next batch may be written while
/// this one is flushed; on SQLite once it is durable), and answers its
/// callers once it is durable.
async fn commit_batch<S: AcceptStore>(
    store: Arc<S>,
    batch: Vec<Pending>,
    turn: tokio::sync::OwnedSemaphorePermit,
) {
    let (jobs, replies): (Vec<CommitJob>, Vec<_>) = batch.into_iter().unzip();
    let committed = store.commit_jobs(&jobs).await;
    drop(turn);
    match committed {
        Ok((outcomes, durable)) if outcomes.len() == jobs.len() => match durable.await {
            Ok(()) => {
                for ((reply, outcome), job) in replies.into_iter().zip(outcomes).zip(jobs) {
                    let _ = reply.send(Ok((outcome, job)));
                }
            }
            Err(error) => refuse(
                replies,
                &format!(
                    "the accept could not be made durable: {:#}",
                    anyhow::Error::from(error)
                ),
            ),
        },
        result => {
            let cause = match result {
                Err(e) => e.chain(),
                Ok(_) => "the store answered a different number of jobs".to_owned(),
            };
            tracing::warn!(
                jobs = jobs.len(),
                messages = jobs.iter().map(|j| j.messages.len()).sum::<usize>(),
                error = %cause,
                "group commit failed; every caller in the batch is told to retry"
            );
            refuse(replies, &format!("the accept transaction failed: {cause}"));
        }
    }
}

/// Tells every caller of a batch that nothing of it is acknowledged, and
/// that retrying is safe.
fn refuse(replies: Vec<oneshot::Sender<Result<(JobOutcome, CommitJob)>>>, why: &str) {
    for reply in replies {
        let _ = reply.send(Err(Error::StorageUnavailable(anyhow::anyhow!("{why}"))));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A store that commits at once and makes each batch durable only when
    /// the test opens that batch's gate.
    #[derive(Default)]
    struct GatedStore {
        gates: Mutex<Vec<oneshot::Sender<Result<()>>>>,
        written: tokio::sync::Notify,
    }

    impl AcceptStore for std::sync::Arc<GatedStore> {
        async fn commit_jobs(&self, jobs: &[CommitJob]) -> Result<(Vec<JobOutcome>, Durable)> {
            let (open, gate) = oneshot::channel();
            self.gates.lock().expect("gates").push(open);
            self.written.notify_one();
            let durable = async move { gate.await.unwrap_or_else(|_| Ok(())) };
            Ok((vec![JobOutcome::Committed; jobs.len()], Box::pin(durable)))
        }
        async fn idempotency_record(
            &self,
            _: &str,
            _: &str,
            _: DateTime<Utc>,
        ) -> Result<Option<IdempotencyRecord>> {
            Ok(None)
        }
        async fn purge_idempotency(&self, _: DateTime<Utc>) -> Result<u64> {
            Ok(0)
        }
    }

    impl GatedStore {
        /// Waits until `n` batches were written.
        async fn batches(&self, n: usize) {
            while self.gates.lock().expect("gates").len() < n {
                self.written.notified().await;
            }
        }

        fn open(&self, batch: usize, result: Result<()>) {
            let gate = std::mem::replace(
                &mut self.gates.lock().expect("gates")[batch],
                oneshot::channel().0,
            );
            let _ = gate.send(result);
        }
    }

    fn job(account: &str) -> CommitJob {
        CommitJob {
            account_id: account.to_owned(),
            idempotency: None,
            messages: Vec::new(),
            daily_quota: None,
            day: 0,
            accepted_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn callers_are_answered_once_their_commit_is_durable_while_the_next_is_written() {
        let store = std::sync::Arc::new(GatedStore::default());
        let committer = Committer::start(store.clone());
        let first = tokio::spawn({
            let committer = committer.clone();
            async move { committer.commit(job("first")).await }
        });
        store.batches(1).await;
        let second = tokio::spawn({
            let committer = committer.clone();
            async move { committer.commit(job("second")).await }
        });
        // The second batch is written while the first still waits to be
        // durable, and the first caller has not been answered.
        store.batches(2).await;
        assert!(
            !first.is_finished(),
            "answered before its commit was durable"
        );

        store.open(0, Ok(()));
        let (outcome, job) = first.await.unwrap().unwrap();
        assert_eq!(outcome, JobOutcome::Committed);
        assert_eq!(job.account_id, "first", "the job comes back to its caller");
        store.open(
            1,
            Err(Error::Internal(anyhow::anyhow!("the device failed"))),
        );
        let refused = second.await.unwrap().unwrap_err();
        assert!(
            matches!(refused, Error::StorageUnavailable(_)),
            "a commit that could not be made durable is retryable: {refused:?}"
        );
    }
}
