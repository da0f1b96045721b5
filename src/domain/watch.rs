//! WatchMessages: an account's events, first those stored after a cursor,
//! then live ones as they are written.
//!
//! Every watcher reads the events table by cursor at its own pace, and
//! then follows what is committed: on SQLite, where one process writes,
//! the store hands every watcher of the process each run of events as it
//! becomes durable ([`Published`]), and a watcher reads the table again
//! only when it missed one; on PostgreSQL the store bumps a signal, and
//! every watcher reads what is new. A slow consumer holds up nobody: its
//! buffer fills, its reader waits (missing runs handed out meanwhile), and
//! it carries on from its cursor. Events written by another process sharing
//! a PostgreSQL database arrive through its notifications (`LISTEN/NOTIFY`);
//! a periodic re-read covers a notification lost with a connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
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

/// A run of durable events: every event whose cursor is above `after` and
/// at most `through`, in cursor order, each with its account. A run whose
/// `after` equals its `through` carries nothing and says only that events
/// up to `through` exist (a watcher behind it reads them from the table).
#[derive(Debug)]
pub struct Published {
    pub after: i64,
    pub through: i64,
    pub events: Vec<(String, Event)>,
}

/// How a watcher hears of events committed after its last read.
pub enum Live {
    /// Every run of events as it becomes durable, in cursor order.
    Published(broadcast::Receiver<Arc<Published>>),
    /// A signal that events were committed; the watcher reads them.
    Signal(watch::Receiver<u64>),
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

    /// How a watcher follows what is committed from now on.
    fn live(&self) -> Live;
}

impl Live {
    /// Notes that the watcher is about to read: what is committed from
    /// here on is news.
    fn reading(&mut self) {
        if let Live::Signal(signal) = self {
            signal.borrow_and_update();
        }
    }

    /// Waits until there may be events after `cursor` that the watcher has
    /// not read; events handed over meanwhile that match `filter` are sent
    /// to `tx` and move `cursor` on. Returns `None` when the watcher should
    /// stop; otherwise it reads, and once read every event up to the cursor
    /// returned (0 when unknown) was considered.
    async fn follow(
        &mut self,
        filter: &WatchFilter,
        cursor: &mut i64,
        tx: &mpsc::Sender<Result<Event>>,
    ) -> Option<i64> {
        loop {
            let published = match self {
                Live::Signal(signal) => {
                    return tokio::select! {
                        changed = signal.changed() => changed.ok().map(|()| 0),
                        () = tokio::time::sleep(REREAD) => Some(0),
                        () = tx.closed() => None,
                    };
                }
                Live::Published(runs) => tokio::select! {
                    run = runs.recv() => run,
                    () = tokio::time::sleep(REREAD) => return Some(0),
                    () = tx.closed() => return None,
                },
            };
            let run = match published {
                Ok(run) => run,
                // Runs were missed (the watcher fell behind): read them.
                Err(RecvError::Lagged(_)) => return Some(0),
                Err(RecvError::Closed) => return None,
            };
            if run.through <= *cursor {
                continue;
            }
            if run.after > *cursor {
                // Events between the last read and this run, all committed
                // by now: read them.
                return Some(run.through);
            }
            for (account_id, event) in &run.events {
                if event.cursor > *cursor
                    && filter.matches(account_id, event)
                    && tx.send(Ok(event.clone())).await.is_err()
                {
                    return None;
                }
            }
            *cursor = run.through;
        }
    }
}

impl WatchFilter {
    /// Whether `event` of `account_id` is one this watcher wants.
    fn matches(&self, account_id: &str, event: &Event) -> bool {
        account_id == self.account_id
            && self
                .message_id
                .as_ref()
                .is_none_or(|id| *id == event.message_id)
            && (self.types.is_empty() || self.types.contains(&event.event_type))
    }
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
    // Followed from before the first read, so nothing committed between
    // the read and the following is missed.
    let mut live = store.live();
    let start = match (after_cursor, &filter.message_id) {
        (0, None) => store.latest_cursor().await?,
        (cursor, _) => cursor,
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        // Every event up to here was considered (sent or not wanted).
        let mut cursor = start;
        // Once the next read is complete, so is every event up to here.
        let mut read_through = 0;
        loop {
            live.reading();
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
            cursor = cursor.max(read_through);
            match live.follow(&filter, &mut cursor, &tx).await {
                Some(through) => read_through = through,
                None => return,
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::StreamExt;

    use super::*;
    use crate::domain::messages::{EventDetails, Status};

    /// An events table in memory, and the runs a store would hand over.
    #[derive(Clone)]
    struct Table {
        rows: Arc<Mutex<Vec<(String, Event)>>>,
        runs: broadcast::Sender<Arc<Published>>,
        signal: Arc<watch::Sender<u64>>,
    }

    impl Table {
        fn new() -> Table {
            Table {
                rows: Arc::default(),
                runs: broadcast::Sender::new(16),
                signal: Arc::new(watch::Sender::new(0)),
            }
        }

        fn insert(&self, account: &str, cursor: i64, event_type: EventType, recipient: &str) {
            self.rows
                .lock()
                .unwrap()
                .push((account.to_owned(), event(cursor, event_type, recipient)));
        }

        fn publish(&self, after: i64, through: i64, events: Vec<(&str, Event)>) {
            let events = events.into_iter().map(|(a, e)| (a.to_owned(), e)).collect();
            self.runs
                .send(Arc::new(Published {
                    after,
                    through,
                    events,
                }))
                .expect("a watcher listens");
        }
    }

    fn event(cursor: i64, event_type: EventType, recipient: &str) -> Event {
        Event {
            cursor,
            message_id: format!("msg_{cursor}"),
            recipient: recipient.to_owned(),
            event_type,
            status: Status::Queued,
            details: EventDetails::default(),
            occurred_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    impl EventStore for Table {
        async fn events_after(
            &self,
            filter: &WatchFilter,
            after: i64,
            limit: u64,
        ) -> Result<Vec<Event>> {
            Ok(self
                .rows
                .lock()
                .unwrap()
                .iter()
                .filter(|(account, e)| e.cursor > after && filter.matches(account, e))
                .take(limit as usize)
                .map(|(_, e)| e.clone())
                .collect())
        }

        async fn latest_cursor(&self) -> Result<i64> {
            Ok(self
                .rows
                .lock()
                .unwrap()
                .last()
                .map_or(0, |(_, e)| e.cursor))
        }

        fn event_signal(&self) -> watch::Receiver<u64> {
            self.signal.subscribe()
        }

        fn live(&self) -> Live {
            Live::Published(self.runs.subscribe())
        }
    }

    fn account(id: &str) -> WatchFilter {
        WatchFilter {
            account_id: id.to_owned(),
            ..Default::default()
        }
    }

    async fn next(stream: &mut BoxStream<'static, Result<Event>>) -> Event {
        tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("an event arrives")
            .expect("the stream is open")
            .expect("no error")
    }

    #[tokio::test]
    async fn a_run_that_follows_the_cursor_is_streamed_as_handed_over() {
        let table = Table::new();
        let mut stream = watch(table.clone(), account("a"), 0).await.unwrap();
        // Not in the table: only the run can bring them.
        table.publish(
            0,
            3,
            vec![
                ("a", event(1, EventType::Queued, "run")),
                ("b", event(2, EventType::Queued, "run")),
                ("a", event(3, EventType::Delivered, "run")),
            ],
        );
        let (first, second) = (next(&mut stream).await, next(&mut stream).await);
        assert_eq!((first.cursor, first.recipient.as_str()), (1, "run"));
        assert_eq!(
            (second.cursor, second.event_type),
            (3, EventType::Delivered),
            "account b's event is not a's"
        );
    }

    #[tokio::test]
    async fn a_run_after_a_gap_sends_the_watcher_to_the_table_and_nothing_repeats() {
        let table = Table::new();
        let mut stream = watch(table.clone(), account("a"), 0).await.unwrap();
        // Committed while the watcher missed their runs.
        for cursor in 1..=4 {
            table.insert("a", cursor, EventType::Queued, "table");
        }
        table.publish(3, 4, vec![("a", event(4, EventType::Queued, "run"))]);
        for cursor in 1..=4 {
            let got = next(&mut stream).await;
            assert_eq!((got.cursor, got.recipient.as_str()), (cursor, "table"));
        }
        // A run already read, then the next one: each event once.
        table.publish(3, 4, vec![("a", event(4, EventType::Queued, "run"))]);
        table.publish(4, 5, vec![("a", event(5, EventType::Sent, "run"))]);
        let got = next(&mut stream).await;
        assert_eq!((got.cursor, got.recipient.as_str()), (5, "run"));
    }

    #[tokio::test]
    async fn runs_are_filtered_by_message_and_type() {
        let table = Table::new();
        let filter = WatchFilter {
            account_id: "a".into(),
            message_id: Some("msg_3".into()),
            types: vec![EventType::Delivered],
        };
        let mut stream = watch(table.clone(), filter, 0).await.unwrap();
        // The single-message replay starts from the table (empty); the
        // first run follows it.
        table.publish(
            0,
            3,
            vec![
                ("a", event(1, EventType::Delivered, "run")),
                ("a", event(2, EventType::Queued, "run")),
                ("a", event(3, EventType::Delivered, "run")),
            ],
        );
        let got = next(&mut stream).await;
        assert_eq!(
            (got.message_id.as_str(), got.event_type),
            ("msg_3", EventType::Delivered)
        );
    }
}
