//! Group recording: the workers hand their finished deliveries to one task,
//! which records everything waiting in one transaction and then answers
//! each worker. Under load many deliveries share one commit (one fsync on
//! SQLite, one round of locks on PostgreSQL); alone, a delivery waits for
//! nobody.

use tokio::sync::{mpsc, oneshot};

use crate::domain::delivery::{DeliveryRecord, DeliveryStore};
use crate::domain::error::{Error, Result};

/// The most recipients one recording transaction carries.
const MAX_BATCH_RECIPIENTS: usize = 512;

/// Deliveries that may wait for the recorder before workers wait to hand
/// theirs over.
const QUEUE: usize = 1024;

type Pending = (DeliveryRecord, oneshot::Sender<Result<()>>);

/// The handle workers use; the task ends when every handle is gone.
#[derive(Clone, Debug)]
pub(super) struct Recorder {
    queue: mpsc::Sender<Pending>,
}

impl Recorder {
    /// Starts the recording task over `store`.
    pub(super) fn start<S: DeliveryStore>(store: S) -> Recorder {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(record_loop(store, rx));
        Recorder { queue }
    }

    /// Records `record`; returns once its transaction committed (or failed).
    pub(super) async fn record(&self, record: DeliveryRecord) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let stopped = || Error::StorageUnavailable(anyhow::anyhow!("the recorder has stopped"));
        self.queue.send((record, tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Tells every worker of a batch how its recording ended.
fn answer(replies: Vec<oneshot::Sender<Result<()>>>, result: Result<()>) {
    let result = result.map_err(Error::chain);
    for reply in replies {
        let _ = reply.send(result.clone().map_err(|cause| {
            Error::StorageUnavailable(anyhow::anyhow!("recording the attempts failed: {cause}"))
        }));
    }
}

async fn record_loop<S: DeliveryStore>(store: S, mut rx: mpsc::Receiver<Pending>) {
    let mut held: Option<Pending> = None;
    loop {
        let first = match held.take() {
            Some(pending) => pending,
            None => match rx.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        let mut size = first.0.results.len();
        let mut batch = vec![first];
        // Whatever is already waiting joins; the wait is the last commit.
        while size < MAX_BATCH_RECIPIENTS {
            match rx.try_recv() {
                Ok(pending) if size + pending.0.results.len() > MAX_BATCH_RECIPIENTS => {
                    held = Some(pending);
                    break;
                }
                Ok(pending) => {
                    size += pending.0.results.len();
                    batch.push(pending);
                }
                Err(_) => break,
            }
        }
        let (records, replies): (Vec<DeliveryRecord>, Vec<_>) = batch.into_iter().unzip();
        match store.record_attempts(records).await {
            // The workers hear once the transaction is durable; meanwhile
            // the next batch is written.
            Ok(durable) => {
                tokio::spawn(async move {
                    let result = durable.await;
                    answer(replies, result);
                });
            }
            Err(error) => answer(replies, Err(error)),
        }
    }
}
