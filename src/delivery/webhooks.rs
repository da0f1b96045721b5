//! The webhook dispatcher: claims due outbox rows with a lease, sends each
//! as its own task (signed afresh, through the SSRF-checking HTTP adapter),
//! and hands the outcomes to one recording task that stores everything
//! waiting in one transaction.
//!
//! An endpoint gets at most `per_endpoint` requests at once: its other due
//! deliveries stay in the table, unclaimed, so a slow or hanging endpoint
//! holds a bounded share of the dispatcher and never the others' turn.
//! A delivery whose process dies mid-request is claimed again when its
//! lease runs out and sent with the same `webhook-id`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::domain::clock::Clock;
use crate::domain::ids::new_id;
use crate::domain::watch::EventStore;
use crate::domain::webhook_deliveries::{
    DispatchPolicy, Due, Recorded, Room, WebhookDeliveryStore,
};
use crate::domain::webhooks::WebhookSender;

/// How long slots freed by finished requests wait to be refilled
/// together.
const REFILL_WAIT: Duration = Duration::from_millis(1);

/// The most outcomes one recording transaction carries.
const MAX_RECORD_BATCH: usize = 512;

/// How the dispatcher works.
#[derive(Clone, Debug)]
pub struct DispatchSettings {
    /// Requests in flight at once, over all endpoints.
    pub concurrency: usize,
    /// Requests in flight at once to one endpoint.
    pub per_endpoint: usize,
    /// How long a claim holds: longer than a request may take (10 s).
    pub lease: Duration,
    /// How often the dispatcher looks for due deliveries without being
    /// woken (retries, other processes' events).
    pub idle_poll: Duration,
    pub policy: DispatchPolicy,
    /// Test instrumentation (`POSTHORN_TEST_FAILPOINT=after_webhook_2xx_before_mark`):
    /// after an endpoint's 2xx, announce it on stderr and never record it,
    /// so a test can kill the process in between (W3).
    pub hang_after_success: bool,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings {
            concurrency: 512,
            per_endpoint: 64,
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_millis(500),
            policy: DispatchPolicy::default(),
            hang_after_success: false,
        }
    }
}

/// Starts the dispatcher; it stops claiming when `stopping` turns true and
/// returns once what it sent is recorded.
pub fn spawn<S, W>(
    store: S,
    sender: Arc<W>,
    clock: Arc<dyn Clock>,
    settings: DispatchSettings,
    stopping: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    S: WebhookDeliveryStore + EventStore + Clone,
    W: WebhookSender,
{
    let (outcomes, recorded) = mpsc::channel(MAX_RECORD_BATCH * 2);
    let recorder = tokio::spawn(record_loop(
        store.clone(),
        recorded,
        settings.policy.disable_after,
    ));
    let dispatcher = Arc::new(Dispatcher {
        store,
        sender,
        clock,
        settings,
        outcomes,
        owner: new_id("whk"),
        claims: AtomicU64::new(0),
    });
    tokio::spawn(async move {
        dispatcher.run(stopping).await;
        // The last sender is gone: the recorder stores what is left and ends.
        let _ = recorder.await;
    })
}

struct Dispatcher<S, W> {
    store: S,
    sender: Arc<W>,
    clock: Arc<dyn Clock>,
    settings: DispatchSettings,
    outcomes: mpsc::Sender<Recorded>,
    owner: String,
    claims: AtomicU64,
}

impl<S, W> Dispatcher<S, W>
where
    S: WebhookDeliveryStore + EventStore,
    W: WebhookSender,
{
    /// Claims due deliveries whenever requests may start, and waits for new
    /// events, a finished request or the idle poll once the table has none.
    async fn run(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let mut work = self.store.event_signal();
        let mut running: JoinSet<String> = JoinSet::new();
        let mut in_flight: HashMap<String, usize> = HashMap::new();
        let mut dry = false;
        let mut last_claim = Instant::now();
        // Requests finished since the last claim, and when their slots are
        // claimed for at the latest: freed slots are refilled together,
        // not one claim per finished request.
        let mut freed = 0usize;
        let mut refill_at: Option<tokio::time::Instant> = None;
        let finished = |in_flight: &mut HashMap<String, usize>, webhook: String| {
            if let Some(n) = in_flight.get_mut(&webhook) {
                *n -= 1;
                if *n == 0 {
                    in_flight.remove(&webhook);
                }
            }
        };
        loop {
            if *stopping.borrow() {
                break;
            }
            while let Some(done) = running.try_join_next() {
                if let Ok(webhook) = done {
                    finished(&mut in_flight, webhook);
                }
            }
            if dry && last_claim.elapsed() >= self.settings.idle_poll {
                dry = false;
            }
            let free = self.settings.concurrency.saturating_sub(running.len());
            if free > 0 && !dry {
                work.borrow_and_update();
                last_claim = Instant::now();
                (freed, refill_at) = (0, None);
                let limit = free.min(MAX_RECORD_BATCH);
                let room = Room {
                    total: limit,
                    per_endpoint: self.settings.per_endpoint,
                    in_flight: in_flight.clone(),
                };
                match self.claim(&room).await {
                    Ok((lease, due)) => {
                        // Fewer than a claim reads: the table has no more
                        // for now, or what it has waits for room.
                        dry = due.len() < room.candidates();
                        for due in due {
                            *in_flight.entry(due.webhook_id.clone()).or_default() += 1;
                            let this = self.clone();
                            let lease = lease.clone();
                            running.spawn(async move { this.send(due, lease).await });
                        }
                        if !dry {
                            continue;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not claim due webhook deliveries");
                        dry = true;
                    }
                }
            }
            let poll = self.settings.idle_poll.saturating_sub(last_claim.elapsed());
            tokio::select! {
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok(webhook) = done {
                        finished(&mut in_flight, webhook);
                    }
                    // Room again (for a saturated endpoint too): claimed
                    // once half of what ran has finished, or shortly.
                    freed += 1;
                    if freed >= running.len() {
                        dry = false;
                    } else if refill_at.is_none() {
                        refill_at = Some(tokio::time::Instant::now() + REFILL_WAIT);
                    }
                }
                () = tokio::time::sleep_until(refill_at.unwrap_or_else(tokio::time::Instant::now)),
                    if refill_at.is_some() => {
                    refill_at = None;
                    dry = false;
                }
                _ = work.changed() => dry = false,
                () = tokio::time::sleep(poll) => dry = false,
                _ = stopping.changed() => {}
            }
        }
        // Requests under way finish (each within its timeout) and are
        // recorded; nothing new starts.
        while running.join_next().await.is_some() {}
    }

    /// Claims what `room` leaves under a new lease token.
    async fn claim(&self, room: &Room) -> crate::domain::Result<(String, Vec<Due>)> {
        let n = self.claims.fetch_add(1, Ordering::Relaxed);
        let lease = format!("{}-{n}", self.owner);
        let now = self.clock.now();
        let until = now + chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
        let due = self
            .store
            .claim_webhook_deliveries(&lease, now, until, room)
            .await?;
        Ok((lease, due))
    }

    /// Sends one delivery and hands its outcome to the recorder; returns
    /// the endpoint's id.
    async fn send(&self, due: Due, lease: String) -> String {
        let attempted_at = self.clock.now();
        let (headers, body) = due.request(attempted_at);
        let attempt = self.sender.post(&due.url, headers, body).await;
        if self.settings.hang_after_success && attempt.succeeded() {
            eprintln!(
                "failpoint after_webhook_2xx_before_mark: delivery {} answered {}; not recording",
                due.id, attempt.status_code
            );
            std::future::pending::<()>().await;
        }
        let next = self.settings.policy.next(
            due.failures,
            &attempt,
            self.clock.now(),
            rand::random::<f64>(),
        );
        let record = Recorded {
            delivery_id: due.id,
            webhook_id: due.webhook_id.clone(),
            lease,
            failures: due.failures,
            attempted_at,
            attempt,
            next,
        };
        if self.outcomes.send(record).await.is_err() {
            tracing::warn!(
                "the webhook recorder has stopped; the delivery returns when its lease ends"
            );
        }
        due.webhook_id
    }
}

/// Stores outcomes as they come, everything waiting in one transaction.
async fn record_loop<S: WebhookDeliveryStore>(
    store: S,
    mut outcomes: mpsc::Receiver<Recorded>,
    disable_after: Duration,
) {
    let mut batch = Vec::with_capacity(MAX_RECORD_BATCH);
    while outcomes.recv_many(&mut batch, MAX_RECORD_BATCH).await > 0 {
        let count = batch.len();
        match store
            .record_webhook_attempts(std::mem::take(&mut batch), disable_after)
            .await
        {
            Ok(disabled) => {
                for endpoint in disabled {
                    tracing::warn!(
                        webhook_id = %endpoint.webhook_id,
                        account_id = %endpoint.account_id,
                        reason = %endpoint.reason,
                        "webhook endpoint disabled"
                    );
                }
            }
            Err(error) => tracing::warn!(
                %error,
                deliveries = count,
                "could not record webhook attempts; those deliveries are sent again when their leases end"
            ),
        }
    }
}
