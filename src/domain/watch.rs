//! WatchMessages: an account's events, first those stored after a cursor,
//! then live ones as they are written.
//!
//! Every watcher reads the events table by cursor at its own pace; writers
//! only bump a signal after committing events. A slow consumer therefore
//! holds up nobody: its buffer fills, its reader waits, and it carries on
//! from its cursor. Events written by another process sharing a PostgreSQL
//! database arrive through its notifications (`LISTEN/NOTIFY`); a periodic
//! re-read covers a notification lost with a connection.

use std::future::Future;
use std::time::Duration;

use futures::stream::BoxStream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::error::{Error, Result};
use super::messages::{Event, EventType};

/// Events a watcher buffers before its reader waits for the consumer.
const BUFFER: usize = 256;
/// Events read per query.
const PAGE: u64 = 500;
/// How often a watcher looks for events without a signal.
const REREAD: Duration = Duration::from_secs(1);

/// Which events a watcher wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchFilter {
    pub account_id: String,
    pub message_id: Option<String>,
    /// Empty means every type.
    pub types: Vec<EventType>,
}

/// What watching needs from storage.
pub trait EventStore: Clone + Send + Sync + 'static {
    /// Up to `limit` events matching `filter` with a cursor above `after`,
    /// in cursor order.
    fn events_after(
        &self,
        filter: &WatchFilter,
        after: i64,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Event>>> + Send;

    /// The newest cursor of the whole event log (0 when empty).
    fn latest_cursor(&self) -> impl Future<Output = Result<i64>> + Send;

    /// Changes whenever events were committed by this process or, on
    /// PostgreSQL, by any process sharing the database.
    fn event_signal(&self) -> watch::Receiver<u64>;
}

/// Streams the events of `filter`: from `after_cursor` when given (> 0);
/// otherwise live ones only — except for a single message, whose stored
/// events are replayed first.
pub async fn watch<S: EventStore>(
    store: S,
    filter: WatchFilter,
    after_cursor: i64,
) -> Result<BoxStream<'static, Result<Event>>> {
    if after_cursor < 0 {
        return Err(Error::invalid("after_cursor", "must not be negative"));
    }
    let mut signal = store.event_signal();
    signal.borrow_and_update();
    let start = match (after_cursor, &filter.message_id) {
        (0, None) => store.latest_cursor().await?,
        (cursor, _) => cursor,
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let mut cursor = start;
        loop {
            signal.borrow_and_update();
            let batch = match store.events_after(&filter, cursor, PAGE).await {
                Ok(batch) => batch,
                Err(error) => {
                    let _ = tx.send(Err(error)).await;
                    return;
                }
            };
            let full = batch.len() as u64 == PAGE;
            for event in batch {
                cursor = event.cursor;
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                changed = signal.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(REREAD) => {}
                () = tx.closed() => return,
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
