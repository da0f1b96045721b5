//! The worker pool: claims due recipients with a lease, builds each message
//! once, hands it to the transport, classifies the replies and records
//! every attempt with its event. The only module that imports lettre.

pub mod mime;
pub mod personal;
mod record;
pub mod smtp;
mod tls;
pub mod transport;
pub mod webhook_http;
pub mod webhooks;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::domain::delivery::{
    AttemptResult, Claimed, DeliveryRecord, DeliveryStore, Outcome, Reply, RetryPolicy, classify,
};
use crate::domain::email::EmailAddress;
use crate::domain::ids::new_id;
use crate::domain::links::Links;
use crate::domain::messages::Message;
use crate::domain::suppressions::SuppressionStore;
use crate::domain::watch::EventStore;
use record::Recorder;
pub use transport::Transport;

/// Every recipient's reply when the message could not be built: failed,
/// since retrying cannot help.
fn failed(error: &mime::BuildError, recipients: usize) -> Vec<(Outcome, Reply)> {
    (0..recipients)
        .map(|_| (Outcome::Failed, Reply::failure(error.to_string(), "")))
        .collect()
}

/// How the pool works.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// Messages delivered at once.
    pub concurrency: usize,
    /// The most recipients claimed per query (claims stay within twice the
    /// concurrency minus what runs).
    pub batch: u64,
    /// How long a claim holds before the rescuer may free it.
    pub lease: Duration,
    /// How often the pool looks for due work without being woken (retries,
    /// scheduled sends, other processes' work).
    pub idle_poll: Duration,
    pub retry: RetryPolicy,
    /// Test instrumentation (`POSTHORN_TEST_FAILPOINT=after_reply_before_record`):
    /// once the transport has answered, announce it on stderr and never
    /// record, so a test can kill the process between the relay's reply and
    /// the state change (D4).
    pub hang_after_reply: bool,
    /// Signs the links written into delivered mail (unsubscribe, open
    /// pixel, tracked clicks); without them a message asking for links is
    /// sent without them.
    pub links: Option<Links>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            concurrency: 64,
            batch: 256,
            lease: Duration::from_secs(120),
            idle_poll: Duration::from_millis(500),
            retry: RetryPolicy::default(),
            hang_after_reply: false,
            links: None,
        }
    }
}

/// Starts the pool; it stops claiming when `stopping` turns true and
/// returns once the work it holds is recorded or released.
pub fn spawn<S>(
    store: S,
    transport: Transport,
    settings: DeliverySettings,
    stopping: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    S: DeliveryStore + EventStore + SuppressionStore + Clone,
{
    let pool = Arc::new(Pool {
        recorder: Recorder::start(store.clone()),
        store,
        transport,
        settings,
        owner: new_id("wrk"),
        claims: AtomicU64::new(0),
    });
    tokio::spawn(pool.run(stopping))
}

struct Pool<S> {
    store: S,
    recorder: Recorder,
    transport: Transport,
    settings: DeliverySettings,
    owner: String,
    /// Claims made so far: each gets its own lease token.
    claims: AtomicU64,
}

/// A claimed message waiting for a worker.
type Job = (Message, Vec<Claimed>);

impl<S: DeliveryStore + EventStore + SuppressionStore> Pool<S> {
    /// Claims due recipients whenever a worker is free and nothing claimed
    /// is waiting, and keeps up to `concurrency` deliveries running. After
    /// a claim that found nothing it waits for new work (a commit that
    /// wrote events), the idle poll or a finished delivery.
    async fn run(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let mut work = self.store.event_signal();
        let mut last_rescue: Option<Instant> = None;
        let mut waiting: VecDeque<Job> = VecDeque::new();
        // Each delivery is a task of its own, so a claim this loop waits
        // for never holds up a delivery's reply being recorded.
        let mut running: JoinSet<()> = JoinSet::new();
        let mut dry = false;
        let mut last_claim = Instant::now();
        loop {
            if *stopping.borrow() {
                break;
            }
            if last_rescue.is_none_or(|at| at.elapsed() >= self.settings.lease / 4) {
                last_rescue = Some(Instant::now());
                match self.rescue().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        recipients = n,
                        "expired leases taken over: their attempts are recorded as ambiguous and tried again"
                    ),
                    Err(error) => tracing::warn!(%error, "could not rescue expired leases"),
                }
            }
            while running.len() < self.settings.concurrency {
                let Some(job) = waiting.pop_front() else {
                    break;
                };
                let pool = self.clone();
                running.spawn(async move { pool.deliver(job).await });
            }
            if dry && last_claim.elapsed() >= self.settings.idle_poll {
                dry = false;
            }
            if waiting.is_empty() && running.len() < self.settings.concurrency && !dry {
                work.borrow_and_update();
                last_claim = Instant::now();
                // Claims stay near what the workers can start soon, so that
                // other pools sharing the queue find work too.
                let room = (2 * self.settings.concurrency).saturating_sub(running.len());
                let limit = (room as u64).clamp(1, self.settings.batch);
                match self.claim(limit).await {
                    Ok(jobs) if jobs.is_empty() => dry = true,
                    Ok(jobs) => {
                        waiting.extend(jobs);
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not claim due recipients");
                        dry = true;
                    }
                }
            }
            let poll = self.settings.idle_poll.saturating_sub(last_claim.elapsed());
            tokio::select! {
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = work.changed() => dry = false,
                () = tokio::time::sleep(poll) => dry = false,
                _ = stopping.changed() => {}
            }
        }
        // Shutting down: what waits goes back to the queue untried, what
        // runs finishes and is recorded.
        let untried: Vec<Claimed> = waiting
            .into_iter()
            .flat_map(|(_, claimed)| claimed)
            .collect();
        if !untried.is_empty() {
            match self.store.release_leases(&untried).await {
                Ok(n) => tracing::info!(recipients = n, "claimed recipients returned to the queue"),
                Err(error) => {
                    tracing::warn!(%error, "could not release claims; they return when their lease expires")
                }
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// A lease token no claim used before: the pool's id and a counter.
    fn lease_token(&self) -> String {
        format!(
            "{}.{}",
            self.owner,
            self.claims.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Takes over recipients whose worker died or hung past its lease and
    /// records that attempt as ambiguous (the message may have arrived),
    /// due again at once; returns how many.
    async fn rescue(&self) -> crate::domain::Result<usize> {
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
        let claimed = self
            .store
            .claim_expired(&self.lease_token(), now, lease_until)
            .await?;
        let count = claimed.len();
        let mut by_message: BTreeMap<String, Vec<AttemptResult>> = BTreeMap::new();
        for claimed in claimed {
            let result = AttemptResult {
                outcome: Outcome::Ambiguous,
                reply: Reply::failure(
                    "the worker holding this recipient stopped before recording a result \
                     (its lease expired); the message may have arrived and is tried again",
                    "",
                ),
                retry_at: Some(now),
                transport: self.transport.name(),
                duration: Duration::ZERO,
                attempted_at: now,
                claimed,
            };
            by_message
                .entry(result.claimed.message_id.clone())
                .or_default()
                .push(result);
        }
        for (message_id, results) in by_message {
            self.recorder
                .record(DeliveryRecord {
                    message_id,
                    raw_mime: None,
                    results,
                })
                .await?;
        }
        Ok(count)
    }

    /// Leases due recipients and loads their messages, one job per message.
    async fn claim(&self, limit: u64) -> crate::domain::Result<Vec<Job>> {
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
        let claimed = self
            .store
            .claim_due(&self.lease_token(), now, lease_until, limit)
            .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let claimed = match self.leave_out_suppressed(claimed, now).await {
            Ok(claimed) => claimed,
            Err((claimed, error)) => {
                let _ = self.store.release_leases(&claimed).await;
                return Err(error);
            }
        };
        let mut by_message: BTreeMap<String, Vec<Claimed>> = BTreeMap::new();
        for c in claimed {
            by_message.entry(c.message_id.clone()).or_default().push(c);
        }
        let ids: Vec<String> = by_message.keys().cloned().collect();
        let messages = match self.store.messages_for_delivery(&ids).await {
            Ok(messages) => messages,
            Err(error) => {
                let claimed: Vec<Claimed> = by_message.into_values().flatten().collect();
                let _ = self.store.release_leases(&claimed).await;
                return Err(error);
            }
        };
        let mut jobs = Vec::with_capacity(messages.len());
        for message in messages {
            if let Some(claimed) = by_message.remove(&message.id) {
                jobs.push((message, claimed));
            }
        }
        for message_id in by_message.keys() {
            tracing::warn!(%message_id, "claimed recipients of a missing message");
        }
        Ok(jobs)
    }

    /// Records the claimed recipients whose address was suppressed since
    /// their message was accepted as `suppressed`, untried, and returns the
    /// others. On an error every claim is handed back with it.
    async fn leave_out_suppressed(
        &self,
        claimed: Vec<Claimed>,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<Claimed>, (Vec<Claimed>, crate::domain::Error)> {
        let keys: Vec<String> = claimed
            .iter()
            .map(|c| EmailAddress::key_of_stored(&c.email))
            .collect();
        let mut by_account: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (c, key) in claimed.iter().zip(&keys) {
            by_account
                .entry(c.account_id.clone())
                .or_default()
                .push(key.clone());
        }
        let mut suppressed = HashMap::new();
        for (account_id, account_keys) in by_account {
            match self
                .store
                .suppressed_among(&account_id, &account_keys, now)
                .await
            {
                Ok(found) => suppressed.extend(
                    found
                        .into_iter()
                        .map(|(key, s)| ((account_id.clone(), key), s)),
                ),
                Err(error) => return Err((claimed, error)),
            }
        }
        if suppressed.is_empty() {
            return Ok(claimed);
        }
        let mut left_out: BTreeMap<String, Vec<AttemptResult>> = BTreeMap::new();
        let mut kept = Vec::with_capacity(claimed.len());
        for (c, key) in claimed.into_iter().zip(keys) {
            let Some(suppression) = suppressed.get(&(c.account_id.clone(), key)) else {
                kept.push(c);
                continue;
            };
            let reply = Reply::failure(
                format!(
                    "{}, put there after the message was accepted",
                    suppression.why_not_sent()
                ),
                "",
            );
            left_out
                .entry(c.message_id.clone())
                .or_default()
                .push(AttemptResult {
                    outcome: Outcome::Suppressed,
                    reply,
                    retry_at: None,
                    transport: self.transport.name(),
                    duration: Duration::ZERO,
                    attempted_at: now,
                    claimed: c,
                });
        }
        for (message_id, results) in left_out {
            let record = DeliveryRecord {
                message_id: message_id.clone(),
                raw_mime: None,
                results,
            };
            if let Err(error) = self.recorder.record(record).await {
                tracing::warn!(%message_id, %error, "could not record suppressed recipients; their lease will expire and they are looked at again");
            }
        }
        Ok(kept)
    }

    /// Delivers one message to its claimed recipients and records the
    /// outcome; on a storage failure the lease runs out and the rescuer
    /// returns the recipients to the queue.
    async fn deliver(&self, (message, claimed): Job) {
        let started = Instant::now();
        let attempted_at = Utc::now();
        let message_id = message.id.clone();
        let capture = message.test_mode;
        let transport = if capture {
            &Transport::Capture
        } else {
            &self.transport
        };
        let (raw_mime, replies) = match self.personal_links(&message) {
            None => match mime::build(&message, None) {
                Err(error) => (None, failed(&error, claimed.len())),
                Ok(raw) => {
                    let replies = self.send(transport, &message, &claimed, &raw).await;
                    (Some(raw), replies)
                }
            },
            // Each recipient gets a copy of its own, in an envelope of its
            // own, all sent at once (the transport's pool bounds the
            // connections); the first copy is the one kept.
            Some(links) => {
                let message = &message;
                let copies = claimed.chunks(1).map(|one| async move {
                    let personal = personal::personal(message, links, &one[0].email);
                    match mime::build(message, Some(&personal)) {
                        Err(error) => (None, failed(&error, 1)),
                        Ok(raw) => {
                            let replies = self.send(transport, message, one, &raw).await;
                            (Some(raw), replies)
                        }
                    }
                });
                let mut kept = None;
                let mut replies = Vec::with_capacity(claimed.len());
                for (raw, sent) in futures::future::join_all(copies).await {
                    if kept.is_none() {
                        kept = raw;
                    }
                    replies.extend(sent);
                }
                (kept, replies)
            }
        };
        if self.settings.hang_after_reply && raw_mime.is_some() {
            eprintln!(
                "failpoint after_reply_before_record: message {message_id} answered; not recording"
            );
            std::future::pending::<()>().await;
        }
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
        let record = DeliveryRecord {
            message_id: message_id.clone(),
            raw_mime,
            results,
        };
        if let Err(error) = self.recorder.record(record).await {
            tracing::warn!(%message_id, %error, "could not record delivery attempts; the lease will expire and they run again");
        }
    }

    /// The links of a message whose recipients each get a copy of their
    /// own (with an unsubscribe link, an open pixel or tracked links),
    /// when links can be made.
    fn personal_links(&self, message: &Message) -> Option<&Links> {
        self.settings
            .links
            .as_ref()
            .filter(|_| message.unsubscribe || message.track_opens || message.track_clicks)
    }

    /// Hands the built message to the transport, renewing the leases while
    /// it works, and classifies each recipient's reply.
    async fn send(
        &self,
        transport: &Transport,
        message: &Message,
        claimed: &[Claimed],
        raw: &[u8],
    ) -> Vec<(Outcome, Reply)> {
        let recipients: Vec<String> = claimed.iter().map(|c| c.email.clone()).collect();
        let ids: Vec<i64> = claimed.iter().map(|c| c.recipient_id).collect();
        let send = transport.send(&message.id, &message.from_email, &recipients, raw);
        tokio::pin!(send);
        let mut renew = tokio::time::interval(self.settings.lease / 3);
        renew.tick().await;
        let replies = loop {
            tokio::select! {
                replies = &mut send => break replies,
                _ = renew.tick() => {
                    let until = Utc::now()
                        + chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
                    if let Err(error) = self.store.renew_leases(&claimed[0].lease, &ids, until).await {
                        tracing::warn!(message_id = %message.id, %error, "could not renew a lease");
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
}
