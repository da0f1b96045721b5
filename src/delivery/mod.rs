//! The worker pool: claims due recipients with a lease, builds each message
//! once, hands it to the transport, classifies the replies and records
//! every attempt with its event. The only module that imports lettre.

pub mod mime;
pub mod smtp;
mod tls;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use tokio::sync::watch;

use crate::domain::delivery::{
    AttemptResult, Claimed, DeliveryStore, Outcome, Reply, RetryPolicy, classify,
};
use crate::domain::ids::new_id;
use crate::domain::watch::EventStore;
pub use transport::Transport;

/// How the pool works.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// Messages delivered at once.
    pub concurrency: usize,
    /// Recipients claimed per query.
    pub batch: u64,
    /// How long a claim holds before the rescuer may free it.
    pub lease: Duration,
    /// How often the pool looks for due work without being woken (retries,
    /// scheduled sends, other processes' work).
    pub idle_poll: Duration,
    pub retry: RetryPolicy,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            concurrency: 16,
            batch: 256,
            lease: Duration::from_secs(120),
            idle_poll: Duration::from_millis(500),
            retry: RetryPolicy::default(),
        }
    }
}

/// Starts the pool; it stops claiming when `stopping` turns true and
/// returns once the work it holds is recorded.
pub fn spawn<S>(
    store: S,
    transport: Transport,
    settings: DeliverySettings,
    stopping: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    S: DeliveryStore + EventStore,
{
    let pool = Arc::new(Pool {
        store,
        transport,
        settings,
        owner: new_id("wrk"),
    });
    tokio::spawn(pool.run(stopping))
}

struct Pool<S> {
    store: S,
    transport: Transport,
    settings: DeliverySettings,
    owner: String,
}

impl<S: DeliveryStore + EventStore> Pool<S> {
    async fn run(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let mut work = self.store.event_signal();
        let mut last_rescue = Instant::now();
        loop {
            if *stopping.borrow() {
                break;
            }
            if last_rescue.elapsed() >= self.settings.lease / 4 {
                last_rescue = Instant::now();
                match self.store.rescue_expired(Utc::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(recipients = n, "expired leases returned to the queue"),
                    Err(error) => tracing::warn!(%error, "could not rescue expired leases"),
                }
            }
            work.borrow_and_update();
            let now = Utc::now();
            let lease_until =
                now + chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
            let claimed = match self
                .store
                .claim_due(&self.owner, now, lease_until, self.settings.batch)
                .await
            {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "could not claim due recipients");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = work.changed() => {}
                    () = tokio::time::sleep(self.settings.idle_poll) => {}
                    _ = stopping.changed() => {}
                }
                continue;
            }
            let mut by_message: BTreeMap<String, Vec<Claimed>> = BTreeMap::new();
            for c in claimed {
                by_message.entry(c.message_id.clone()).or_default().push(c);
            }
            futures::stream::iter(by_message.into_values())
                .for_each_concurrent(self.settings.concurrency, |group| {
                    let pool = self.clone();
                    async move { pool.deliver(group).await }
                })
                .await;
        }
    }

    /// Delivers one message to its claimed recipients and records the
    /// outcome; on a storage failure the lease runs out and the rescuer
    /// returns the recipients to the queue.
    async fn deliver(&self, claimed: Vec<Claimed>) {
        let started = Instant::now();
        let attempted_at = Utc::now();
        let message_id = claimed[0].message_id.clone();
        let message = match self.store.message_for_delivery(&message_id).await {
            Ok(Some(message)) => message,
            Ok(None) => {
                tracing::warn!(%message_id, "claimed recipients of a missing message");
                return;
            }
            Err(error) => {
                tracing::warn!(%message_id, %error, "could not load a message to deliver");
                return;
            }
        };
        let capture = message.test_mode;
        let transport = if capture {
            &Transport::Capture
        } else {
            &self.transport
        };
        let replies: Vec<(Outcome, Reply)> = match mime::build(&message) {
            Err(error) => claimed
                .iter()
                .map(|_| (Outcome::Failed, Reply::failure(error.to_string(), "")))
                .collect(),
            Ok(raw) => {
                if let Err(error) = self.store.store_raw_mime(&message_id, &raw).await {
                    tracing::warn!(%message_id, %error, "could not store the built message");
                    return;
                }
                let recipients: Vec<String> = claimed.iter().map(|c| c.email.clone()).collect();
                let ids: Vec<i64> = claimed.iter().map(|c| c.recipient_id).collect();
                let send = transport.send(&message_id, &message.from_email, &recipients, &raw);
                tokio::pin!(send);
                // The lease is renewed while the transport works.
                let mut renew = tokio::time::interval(self.settings.lease / 3);
                renew.tick().await;
                let replies = loop {
                    tokio::select! {
                        replies = &mut send => break replies,
                        _ = renew.tick() => {
                            let until = Utc::now()
                                + chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
                            if let Err(error) = self.store.renew_leases(&self.owner, &ids, until).await {
                                tracing::warn!(%message_id, %error, "could not renew a lease");
                            }
                        }
                    }
                };
                replies
                    .into_iter()
                    .map(|reply| {
                        let outcome = match classify(&reply) {
                            Outcome::Sent if transport.delivers() => Outcome::Delivered,
                            other => other,
                        };
                        (outcome, reply)
                    })
                    .collect()
            }
        };
        let now = Utc::now();
        let results: Vec<AttemptResult> = claimed
            .into_iter()
            .zip(replies)
            .map(|(claimed, (outcome, reply))| {
                let retry_at = match outcome {
                    Outcome::Deferred => self.settings.retry.next_attempt(
                        message.created_at,
                        now,
                        claimed.attempts + 1,
                        rand::random::<f64>(),
                    ),
                    _ => None,
                };
                AttemptResult {
                    claimed,
                    outcome,
                    reply,
                    retry_at,
                    transport: transport.name(),
                    duration: started.elapsed(),
                    attempted_at,
                }
            })
            .collect();
        if let Err(error) = self.store.record_attempts(&self.owner, &results).await {
            tracing::warn!(%message_id, %error, "could not record delivery attempts; the lease will expire and they run again");
        }
    }
}
