//! The accept use cases: SendEmail, SendBatch and ResendMessage. Each
//! validates, checks the sender, renders templates, claims its idempotency
//! key and stores the message through the group commit; the answer comes
//! only after the commit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use super::address::Address;
use super::commit::{AcceptStore, CommitJob, Committer, IdempotencyRecord, JobOutcome};
use super::sender_allowed;
use super::validate::{Content, Limits, SendInput, ValidSend, header_unsafe, validate};
use crate::domain::accounts::{AccountStore, Identity};
use crate::domain::auth::AuthContext;
use crate::domain::cache::TtlCache;
use crate::domain::clock::{Clock, from_micros, to_micros};
use crate::domain::email::EmailAddress;
use crate::domain::error::{Error, FieldViolation, Result};
use crate::domain::ids::new_id;
use crate::domain::limits::{quota_day, until_quota_reset};
use crate::domain::links::UNSUBSCRIBE_URL_MARK;
use crate::domain::messages::{
    Event, EventDetails, EventType, Message, MessageStore, Recipient, Status, StoredAttachment,
    TemplateRef, not_found,
};
use crate::domain::suppressions::Suppression;
use crate::domain::templates::{TemplateStore, Templates, text::html_to_text};

/// How long idempotency records are kept.
pub const IDEMPOTENCY_RETENTION: chrono::Duration = chrono::Duration::hours(24);

/// The most items of one SendBatch.
pub const MAX_BATCH: usize = 100;

/// Switches of a send that are not content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub track_opens: bool,
    pub track_clicks: bool,
    pub unsubscribe: bool,
}

/// One send as a door hands it over.
#[derive(Clone, Debug, Default)]
pub struct SendRequest {
    pub input: SendInput,
    /// Template variables (a JSON object).
    pub variables: Map<String, Json>,
    pub flags: Flags,
    /// From the request field, the `Idempotency-Key` header or metadata.
    pub idempotency_key: Option<String>,
}

/// The acknowledgement of a stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub id: String,
    pub status: String,
    pub recipient_count: i32,
    pub created_at: DateTime<Utc>,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// For a resend, the message it copies.
    #[serde(default)]
    pub resent_from: Option<String>,
}

impl Receipt {
    /// The status as the domain type.
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Queued)
    }
}

/// A result that may be a replay of an earlier identical request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<T> {
    pub value: T,
    /// True when `value` is the stored response of an earlier request with
    /// the same idempotency key (`Idempotent-Replayed: true`).
    pub replayed: bool,
}

/// A batch item's failure, in a form that can be stored with the batch's
/// idempotency record and replayed as the same error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemError {
    Validation(Vec<(String, String)>),
    SenderNotVerified(String),
    NotFound { kind: String, id: String },
    Other { message: String },
}

impl ItemError {
    fn of(error: &Error) -> ItemError {
        match error {
            Error::Validation(v) => ItemError::Validation(
                v.iter()
                    .map(|v| (v.field.clone(), v.description.clone()))
                    .collect(),
            ),
            Error::SenderNotVerified(a) => ItemError::SenderNotVerified(a.clone()),
            Error::NotFound { kind, id } => ItemError::NotFound {
                kind: (*kind).to_owned(),
                id: id.clone(),
            },
            other => ItemError::Other {
                message: other.to_string(),
            },
        }
    }

    /// The error it stands for.
    pub fn into_error(self) -> Error {
        match self {
            ItemError::Validation(v) => Error::Validation(
                v.into_iter()
                    .map(|(f, d)| FieldViolation::new(f, d))
                    .collect(),
            ),
            ItemError::SenderNotVerified(a) => Error::SenderNotVerified(a),
            ItemError::NotFound { kind, id } => Error::NotFound {
                kind: if kind == "template" {
                    "template"
                } else {
                    "object"
                },
                id,
            },
            ItemError::Other { message } => Error::Internal(anyhow::anyhow!(message)),
        }
    }
}

/// One batch item's outcome: stored, or why not (the same error a single
/// SendEmail would give).
pub type ItemResult = std::result::Result<Receipt, Error>;

#[derive(Serialize, Deserialize)]
struct StoredBatch(Vec<std::result::Result<Receipt, ItemError>>);

/// Keys of requests running in this process: a second request with the
/// same key waits for nobody and is told the first is still running.
#[derive(Default)]
struct InFlight(Mutex<HashSet<(String, String)>>);

struct InFlightGuard<'a> {
    set: &'a InFlight,
    entry: (String, String),
}

impl InFlight {
    fn enter(&self, account_id: &str, key: &str) -> Result<InFlightGuard<'_>> {
        let entry = (account_id.to_owned(), key.to_owned());
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !set.insert(entry.clone()) {
            return Err(Error::IdempotencyKeyInUse(key.to_owned()));
        }
        Ok(InFlightGuard { set: self, entry })
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.set
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.entry);
    }
}

/// Settings of the accept path.
#[derive(Clone, Debug)]
pub struct SendSettings {
    /// Right-hand side of generated Message-IDs.
    pub hostname: String,
    pub limits: Limits,
    /// The server's default daily recipient quota; accounts may override it.
    pub daily_quota: Option<u64>,
    /// How long an account's verified senders are reused once read.
    pub identity_ttl: std::time::Duration,
}

/// The accept use cases.
pub struct Sender<S> {
    store: S,
    templates: Arc<Templates<S>>,
    clock: Arc<dyn Clock>,
    committer: Committer,
    settings: SendSettings,
    in_flight: InFlight,
    identities: TtlCache<String, Arc<Vec<Identity>>>,
}

impl<S> Sender<S>
where
    S: AcceptStore + AccountStore + TemplateStore + MessageStore + Clone,
{
    /// Builds the use cases and starts the group-commit writer.
    pub fn new(
        store: S,
        templates: Arc<Templates<S>>,
        clock: Arc<dyn Clock>,
        settings: SendSettings,
    ) -> Self {
        Sender {
            committer: Committer::start(store.clone()),
            store,
            templates,
            identities: TtlCache::new(settings.identity_ttl, clock.clone()),
            clock,
            settings,
            in_flight: InFlight::default(),
        }
    }

    /// The account's sender identities, reused for `identity_ttl`.
    async fn identities(&self, account_id: &str) -> Result<Arc<Vec<Identity>>> {
        if let Some(identities) = self.identities.get(account_id) {
            return Ok(identities);
        }
        let identities = Arc::new(self.store.list_identities(account_id).await?);
        self.identities
            .insert(account_id.to_owned(), identities.clone());
        Ok(identities)
    }

    /// Stored times have microsecond precision; a replayed response must
    /// equal the first, so work with what is stored.
    fn now(&self) -> DateTime<Utc> {
        from_micros(to_micros(self.clock.now()))
    }

    /// Deletes expired idempotency records; returns how many.
    pub async fn purge_idempotency(&self) -> Result<u64> {
        self.store.purge_idempotency(self.now()).await
    }

    /// SendEmail.
    pub async fn send(
        &self,
        caller: &AuthContext,
        request: SendRequest,
    ) -> Result<Answer<Receipt>> {
        let now = self.now();
        let key_violation = request
            .idempotency_key
            .as_ref()
            .and_then(|key| check_key("idempotency_key", key));
        let valid = match (
            validate(&request.input, &self.settings.limits, now),
            key_violation,
        ) {
            (Ok(valid), None) => valid,
            (Ok(_), Some(violation)) => return Err(Error::Validation(vec![violation])),
            (Err(mut violations), violation) => {
                violations.extend(violation);
                return Err(Error::Validation(violations));
            }
        };
        // Only a keyed request is ever compared with another, so only its
        // fingerprint is taken.
        let claim = request.idempotency_key.as_deref().map(|key| Claim {
            key,
            method: "SendEmail",
            fingerprint: fingerprint("SendEmail", std::slice::from_ref(&request)),
        });
        // A key already stored is found when the commit tries to claim it
        // (then replayed or refused), so a fresh key costs no extra read.
        let _guard = match &claim {
            Some(claim) => Some(self.in_flight.enter(&caller.account_id, claim.key)?),
            None => None,
        };
        let identities = self.identities(&caller.account_id).await?;
        if !sender_allowed(&valid.from, &identities) {
            return Err(Error::SenderNotVerified(valid.from.to_string()));
        }
        let message = self.compose(caller, valid, &request, now, None).await?;
        self.store_one(caller, message, claim.as_ref(), now).await
    }

    /// SendBatch: up to 100 sends, each succeeding or failing on its own.
    /// With a batch idempotency key the accepted items are stored in one
    /// transaction with the batch's response.
    pub async fn send_batch(
        &self,
        caller: &AuthContext,
        items: Vec<Result<SendRequest>>,
        key: Option<String>,
    ) -> Result<Answer<Vec<ItemResult>>> {
        let now = self.now();
        let mut violations = Vec::new();
        if items.is_empty() || items.len() > MAX_BATCH {
            violations.push(FieldViolation::new(
                "messages",
                format!("must hold 1 to {MAX_BATCH} emails (got {})", items.len()),
            ));
        }
        if let Some(key) = &key {
            violations.extend(check_key("idempotency_key", key));
        }
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        let Some(key) = key else {
            // Each item is a SendEmail of its own; they share commits.
            let results = futures::future::join_all(items.into_iter().map(|item| async {
                match item {
                    Ok(item) => self.send(caller, item).await,
                    Err(error) => Err(error),
                }
            }))
            .await;
            return Ok(Answer {
                value: results.into_iter().map(|r| r.map(|a| a.value)).collect(),
                replayed: false,
            });
        };

        let readable: Vec<SendRequest> = items
            .iter()
            .map(|i| i.as_ref().cloned().unwrap_or_default())
            .collect();
        let claim = Claim {
            key: &key,
            method: "SendBatch",
            fingerprint: fingerprint("SendBatch", &readable),
        };
        if let Some(answer) = self.replay_batch(caller, &claim, now).await? {
            return Ok(answer);
        }
        let _guard = self.in_flight.enter(&caller.account_id, &key)?;
        let identities = self.identities(&caller.account_id).await?;
        let mut results: Vec<std::result::Result<Receipt, Error>> = Vec::new();
        let mut messages = Vec::new();
        for item in items {
            let outcome = async {
                let item = item?;
                if item.idempotency_key.is_some() {
                    return Err(Error::invalid(
                        "idempotency_key",
                        "items carry no idempotency key of their own when the batch has one",
                    ));
                }
                let valid =
                    validate(&item.input, &self.settings.limits, now).map_err(Error::Validation)?;
                if !sender_allowed(&valid.from, &identities) {
                    return Err(Error::SenderNotVerified(valid.from.to_string()));
                }
                self.compose(caller, valid, &item, now, None).await
            }
            .await;
            match outcome {
                Ok(message) => {
                    // The receipt is written once the suppressions are known.
                    results.push(Ok(receipt(&message)));
                    messages.push(message);
                }
                Err(error @ (Error::StorageUnavailable(_) | Error::Internal(_))) => {
                    return Err(error);
                }
                Err(error) => results.push(Err(error)),
            }
        }
        if messages.is_empty() {
            // Nothing would be stored: the key stays free for a fixed retry.
            return Ok(Answer {
                value: results,
                replayed: false,
            });
        }
        loop {
            let mut receipts = messages.iter().map(receipt);
            for result in results.iter_mut().filter_map(|r| r.as_mut().ok()) {
                *result = receipts.next().expect("a receipt for each message");
            }
            let stored = StoredBatch(
                results
                    .iter()
                    .map(|r| match r {
                        Ok(receipt) => Ok(receipt.clone()),
                        Err(error) => Err(ItemError::of(error)),
                    })
                    .collect(),
            );
            let response = serde_json::to_vec(&stored).expect("a batch serialises");
            let job = self.job(caller, Some((&claim, response)), messages, now);
            match self.committer.commit(job).await? {
                (JobOutcome::Committed, _) => {
                    return Ok(Answer {
                        value: results,
                        replayed: false,
                    });
                }
                (JobOutcome::Suppressed(found), job) => {
                    messages = job
                        .messages
                        .into_iter()
                        .map(|m| admitted(m, &found))
                        .collect();
                }
                (JobOutcome::OverQuota(quota), _) => return Err(quota_error(quota, now)),
                (JobOutcome::KeyTaken, _) => {
                    return match self.replay_batch(caller, &claim, now).await? {
                        Some(answer) => Ok(answer),
                        None => Err(Error::IdempotencyKeyInUse(key.clone())),
                    };
                }
            }
        }
    }

    /// ResendMessage: a new message with the original's content and
    /// recipients, a new id and Message-ID, linked to the original.
    pub async fn resend(
        &self,
        caller: &AuthContext,
        id: &str,
        key: Option<String>,
    ) -> Result<Answer<Receipt>> {
        let now = self.now();
        let mut violations = Vec::new();
        if id.is_empty() {
            violations.push(FieldViolation::new(
                "id",
                "required: a message id such as msg_…",
            ));
        }
        if let Some(key) = &key {
            violations.extend(check_key("idempotency_key", key));
        }
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        let claim = key.as_deref().map(|key| Claim {
            key,
            method: "ResendMessage",
            fingerprint: {
                let mut hash = Sha256::new();
                feed(&mut hash, "ResendMessage");
                feed(&mut hash, id);
                hex::encode(hash.finalize())
            },
        });
        let _guard = match &claim {
            Some(claim) => {
                if let Some(answer) = self.replay(caller, claim, now).await? {
                    return Ok(answer);
                }
                Some(self.in_flight.enter(&caller.account_id, claim.key)?)
            }
            None => None,
        };
        let original = self
            .store
            .message_with_content(&caller.account_id, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let from = Address::parse(&original.from_email)
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored sender unreadable: {e}")))?;
        let identities = self.identities(&caller.account_id).await?;
        if !sender_allowed(&from, &identities) {
            return Err(Error::SenderNotVerified(from.to_string()));
        }
        let message = admitted(self.copy(caller, &original, now), &HashMap::new());
        self.store_one(caller, message, claim.as_ref(), now).await
    }

    /// The commit job of `messages`, making `claim` (when given) with the
    /// response to replay.
    fn job(
        &self,
        caller: &AuthContext,
        claim: Option<(&Claim<'_>, Vec<u8>)>,
        messages: Vec<Message>,
        now: DateTime<Utc>,
    ) -> CommitJob {
        CommitJob {
            account_id: caller.account_id.clone(),
            idempotency: claim.map(|(claim, response)| IdempotencyRecord {
                account_id: caller.account_id.clone(),
                key: claim.key.to_owned(),
                method: claim.method.to_owned(),
                fingerprint: claim.fingerprint.clone(),
                response,
                created_at: now,
                expires_at: now + IDEMPOTENCY_RETENTION,
            }),
            messages,
            daily_quota: self.settings.daily_quota,
            day: quota_day(now),
            accepted_at: now,
        }
    }

    /// Stores one message and answers with its receipt, or with the stored
    /// answer of an identical request that already holds the key.
    async fn store_one(
        &self,
        caller: &AuthContext,
        mut message: Message,
        claim: Option<&Claim<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Answer<Receipt>> {
        loop {
            let receipt = receipt(&message);
            // What a retry with the key replays.
            let claimed = claim.map(|claim| {
                let response = serde_json::to_vec(&receipt).expect("a receipt serialises");
                (claim, response)
            });
            let job = self.job(caller, claimed, vec![message], now);
            match self.committer.commit(job).await? {
                (JobOutcome::Committed, _) => {
                    return Ok(Answer {
                        value: receipt,
                        replayed: false,
                    });
                }
                (JobOutcome::Suppressed(found), mut job) => {
                    let stored = job.messages.pop().expect("the job of one message");
                    message = admitted(stored, &found);
                }
                (JobOutcome::OverQuota(quota), _) => return Err(quota_error(quota, now)),
                (JobOutcome::KeyTaken, _) => {
                    // The key is stored already (an earlier request, or
                    // another process that won the race): replay it, refuse
                    // a different request, or say the first is still
                    // running.
                    let Some(claim) = claim else {
                        return Err(Error::Internal(anyhow::anyhow!(
                            "a request without an idempotency key was refused for its key"
                        )));
                    };
                    return match self.replay(caller, claim, now).await? {
                        Some(answer) => Ok(answer),
                        None => Err(Error::IdempotencyKeyInUse(claim.key.to_owned())),
                    };
                }
            }
        }
    }

    /// The live record holding `claim`'s key, if any; refused when a
    /// different request made it.
    async fn claimed(
        &self,
        caller: &AuthContext,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>> {
        let record = self
            .store
            .idempotency_record(&caller.account_id, claim.key, now)
            .await?;
        match record {
            Some(record)
                if record.method != claim.method || record.fingerprint != claim.fingerprint =>
            {
                Err(Error::IdempotencyKeyReused(claim.key.to_owned()))
            }
            record => Ok(record),
        }
    }

    /// The stored answer for `claim`'s key, if an identical request already
    /// ran.
    async fn replay(
        &self,
        caller: &AuthContext,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Answer<Receipt>>> {
        let Some(record) = self.claimed(caller, claim, now).await? else {
            return Ok(None);
        };
        let value: Receipt = serde_json::from_slice(&record.response)
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored response unreadable: {e}")))?;
        Ok(Some(Answer {
            value,
            replayed: true,
        }))
    }

    async fn replay_batch(
        &self,
        caller: &AuthContext,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Answer<Vec<ItemResult>>>> {
        let Some(record) = self.claimed(caller, claim, now).await? else {
            return Ok(None);
        };
        let StoredBatch(items) = serde_json::from_slice(&record.response)
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored response unreadable: {e}")))?;
        Ok(Some(Answer {
            value: items
                .into_iter()
                .map(|r| r.map_err(ItemError::into_error))
                .collect(),
            replayed: true,
        }))
    }

    /// Builds the message of a valid send: renders a template, derives the
    /// text part, assigns the id and Message-ID.
    async fn compose(
        &self,
        caller: &AuthContext,
        valid: ValidSend,
        request: &SendRequest,
        now: DateTime<Utc>,
        resent_from: Option<String>,
    ) -> Result<Message> {
        let (subject, html, text, template) = match valid.content {
            Content::Inline {
                subject,
                html,
                text,
            } => {
                let text = if text.is_empty() {
                    html_to_text(&html)
                } else {
                    text
                };
                (subject, html, text, None)
            }
            Content::Template { slug, version } => {
                let (rendered, version) = self
                    .templates
                    .render_for_send(&caller.account_id, &slug, version, &request.variables)
                    .await?;
                if let Some(reason) = header_unsafe(&rendered.subject) {
                    return Err(Error::invalid(
                        "variables",
                        format!(
                            "the subject rendered by template `{slug}` {reason}; check the variables it uses"
                        ),
                    ));
                }
                if rendered.subject.chars().count() > self.settings.limits.max_subject_chars {
                    return Err(Error::invalid(
                        "variables",
                        format!(
                            "the subject rendered by template `{slug}` is longer than {} characters",
                            self.settings.limits.max_subject_chars
                        ),
                    ));
                }
                let template = TemplateRef {
                    slug,
                    version,
                    variables: request.variables.clone(),
                };
                (
                    rendered.subject,
                    rendered.html,
                    rendered.text,
                    Some(template),
                )
            }
        };
        let status = if valid.scheduled_at.is_some() {
            Status::Scheduled
        } else {
            Status::Queued
        };
        let id = new_id("msg");
        let display = |kind| {
            valid
                .recipients
                .iter()
                .filter(|(_, k)| *k == kind)
                .map(|(m, _)| m.to_string())
                .collect::<Vec<_>>()
        };
        let size = html.len()
            + text.len()
            + valid
                .attachments
                .iter()
                .map(|a| a.content.len())
                .sum::<usize>();
        // A template that places `{{ unsubscribe_url }}` gets the link (and
        // its headers) whether or not the request asked.
        let places_link = [&html, &text]
            .iter()
            .any(|part| part.contains(UNSUBSCRIBE_URL_MARK));
        let message = Message {
            message_id_header: format!("<{id}@{}>", self.settings.hostname),
            account_id: caller.account_id.clone(),
            status,
            from_email: valid.from.to_string(),
            from_name: valid.from_name.clone(),
            to: display(super::validate::RecipientKind::To),
            cc: display(super::validate::RecipientKind::Cc),
            bcc: display(super::validate::RecipientKind::Bcc),
            reply_to: valid.reply_to.iter().map(ToString::to_string).collect(),
            subject,
            html,
            text,
            template,
            headers: valid.headers,
            tags: valid.tags,
            metadata: valid.metadata,
            track_opens: request.flags.track_opens,
            track_clicks: request.flags.track_clicks,
            unsubscribe: request.flags.unsubscribe || places_link,
            test_mode: caller.test_mode,
            size_bytes: size as i64,
            resent_from,
            idempotency_key: request.idempotency_key.clone(),
            scheduled_at: valid.scheduled_at,
            created_at: now,
            updated_at: now,
            recipients: valid
                .recipients
                .iter()
                .map(|(m, kind)| Recipient {
                    email: m.address.to_string(),
                    name: m.name.clone(),
                    kind: *kind,
                    status,
                    attempts: 0,
                    last_response: String::new(),
                    next_attempt_at: Some(valid.scheduled_at.unwrap_or(now)),
                    updated_at: now,
                    engagement: Default::default(),
                })
                .collect(),
            attachments: valid
                .attachments
                .into_iter()
                .map(|a| StoredAttachment {
                    size_bytes: a.content.len() as i64,
                    filename: a.filename,
                    content_type: a.content_type,
                    content_id: a.content_id,
                    content: a.content,
                })
                .collect(),
            events: Vec::new(),
            id,
        };
        Ok(admitted(message, &HashMap::new()))
    }

    /// A new message with `original`'s content, due now.
    fn copy(&self, caller: &AuthContext, original: &Message, now: DateTime<Utc>) -> Message {
        let id = new_id("msg");
        let mut message = original.clone();
        message.message_id_header = format!("<{id}@{}>", self.settings.hostname);
        message.id = id;
        message.status = Status::Queued;
        message.test_mode = caller.test_mode;
        message.resent_from = Some(original.id.clone());
        message.idempotency_key = None;
        message.scheduled_at = None;
        message.created_at = now;
        message.updated_at = now;
        message.events = Vec::new();
        for r in &mut message.recipients {
            r.status = Status::Queued;
            r.attempts = 0;
            r.last_response.clear();
            r.next_attempt_at = Some(now);
            r.updated_at = now;
        }
        message
    }
}

/// A new message as it is stored, with the account's suppressions that
/// the store found among its recipients (by address key) applied: a
/// suppressed recipient is recorded `suppressed`, with an event, and is
/// never claimed for delivery; a message whose every recipient is
/// suppressed is `suppressed` itself. Its timeline opens with the
/// `queued`, `scheduled` or `suppressed` event. Applying more suppressions
/// to a message admitted before keeps the ones already applied.
fn admitted(mut message: Message, suppressed: &HashMap<String, Suppression>) -> Message {
    for recipient in &mut message.recipients {
        if let Some(suppression) = suppressed.get(&EmailAddress::key_of_stored(&recipient.email)) {
            recipient.status = Status::Suppressed;
            recipient.next_attempt_at = None;
            recipient.last_response = suppression.why_not_sent();
        }
    }
    if message
        .recipients
        .iter()
        .all(|r| r.status == Status::Suppressed)
    {
        message.status = Status::Suppressed;
    }
    message.events.clear();
    let mut message = with_first_event(message);
    let events: Vec<Event> = message
        .recipients
        .iter()
        .filter(|r| r.status == Status::Suppressed)
        .map(|r| Event {
            cursor: 0,
            message_id: message.id.clone(),
            recipient: r.email.clone(),
            event_type: EventType::Suppressed,
            status: Status::Suppressed,
            details: EventDetails {
                reason: r.last_response.clone(),
                ..Default::default()
            },
            occurred_at: message.created_at,
        })
        .collect();
    message.events.extend(events);
    message
}

/// Adds the `queued` or `scheduled` event that opens a message's timeline.
fn with_first_event(mut message: Message) -> Message {
    let (event_type, reason) = match message.status {
        Status::Suppressed => (
            EventType::Suppressed,
            "accepted; every recipient is on the suppression list, so nothing is sent".into(),
        ),
        Status::Scheduled => (
            EventType::Scheduled,
            format!(
                "accepted; due at {}",
                message
                    .scheduled_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ),
        ),
        _ => (EventType::Queued, "accepted and queued for delivery".into()),
    };
    let reason = match &message.resent_from {
        Some(original) => format!("{reason}; a resend of {original}"),
        None => reason,
    };
    message.events.push(Event {
        cursor: 0,
        message_id: message.id.clone(),
        recipient: String::new(),
        event_type,
        status: message.status,
        details: EventDetails {
            reason,
            ..Default::default()
        },
        occurred_at: message.created_at,
    });
    message
}

fn receipt(message: &Message) -> Receipt {
    Receipt {
        id: message.id.clone(),
        status: message.status.as_str().to_owned(),
        recipient_count: message.recipients.len() as i32,
        created_at: message.created_at,
        scheduled_at: message.scheduled_at,
        resent_from: message.resent_from.clone(),
    }
}

fn quota_error(quota: u64, now: DateTime<Utc>) -> Error {
    Error::QuotaExceeded {
        retry_after: until_quota_reset(now),
        quota,
    }
}

/// Checks an idempotency key: 1–255 printable ASCII characters.
pub fn check_key(field: &str, key: &str) -> Option<FieldViolation> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Some(FieldViolation::new(
            field,
            "must be 1 to 255 printable ASCII characters",
        ))
    } else {
        None
    }
}

fn feed(hash: &mut Sha256, part: &str) {
    hash.update((part.len() as u64).to_be_bytes());
    hash.update(part.as_bytes());
}

/// What a keyed request claims: its idempotency key, its RPC and the
/// fingerprint of what it asked, compared with the stored record's when
/// the key is taken already.
struct Claim<'a> {
    key: &'a str,
    method: &'static str,
    fingerprint: String,
}

/// The digest of the canonical form of `requests` for `method`: the same
/// for the same request however it was spelled (JSON key order, header
/// order, gRPC or REST), different when any field differs.
pub fn fingerprint(method: &str, requests: &[SendRequest]) -> String {
    let mut hash = Sha256::new();
    feed(&mut hash, method);
    for request in requests {
        let i = &request.input;
        for part in [&i.from_email, &i.from_name] {
            feed(&mut hash, part);
        }
        for list in [&i.to, &i.cc, &i.bcc, &i.reply_to, &i.tags] {
            feed(&mut hash, &list.len().to_string());
            for item in list {
                feed(&mut hash, item);
            }
        }
        for part in [&i.subject, &i.html, &i.text, &i.template] {
            feed(&mut hash, part);
        }
        feed(&mut hash, &i.template_version.to_string());
        feed(
            &mut hash,
            &canonical(&Json::Object(request.variables.clone())),
        );
        for pairs in [&i.headers, &i.metadata] {
            let sorted: std::collections::BTreeMap<_, _> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            feed(&mut hash, &sorted.len().to_string());
            for (k, v) in sorted {
                feed(&mut hash, k);
                feed(&mut hash, v);
            }
        }
        feed(&mut hash, &i.attachments.len().to_string());
        for a in &i.attachments {
            for part in [&a.filename, &a.content_type, &a.content_id] {
                feed(&mut hash, part);
            }
            hash.update((a.content.len() as u64).to_be_bytes());
            hash.update(&a.content);
        }
        feed(
            &mut hash,
            &i.scheduled_at
                .map(|t| t.timestamp_micros().to_string())
                .unwrap_or_default(),
        );
        let f = request.flags;
        feed(
            &mut hash,
            &format!("{}{}{}", f.track_opens, f.track_clicks, f.unsubscribe),
        );
        feed(&mut hash, request.idempotency_key.as_deref().unwrap_or(""));
    }
    hex::encode(hash.finalize())
}

/// JSON with object keys sorted at every level.
fn canonical(value: &Json) -> String {
    fn sort(value: &Json) -> Json {
        match value {
            Json::Object(map) => {
                let sorted: std::collections::BTreeMap<_, _> =
                    map.iter().map(|(k, v)| (k.clone(), sort(v))).collect();
                Json::Object(sorted.into_iter().collect())
            }
            Json::Array(items) => Json::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SendRequest {
        SendRequest {
            input: SendInput {
                from_email: "hello@acme.example".into(),
                to: vec!["jane@example.com".into()],
                subject: "Hi".into(),
                text: "Hello".into(),
                headers: vec![("X-A".into(), "1".into()), ("X-B".into(), "2".into())],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn fingerprints_ignore_spelling_and_see_every_field() {
        let a = request();
        let mut reordered = request();
        reordered.input.headers.reverse();
        assert_eq!(
            fingerprint("SendEmail", std::slice::from_ref(&a)),
            fingerprint("SendEmail", &[reordered])
        );

        let mut vars_a = request();
        vars_a.variables = serde_json::from_str(r#"{"a":1,"b":{"x":1,"y":2}}"#).unwrap();
        let mut vars_b = request();
        vars_b.variables = serde_json::from_str(r#"{"b":{"y":2,"x":1},"a":1}"#).unwrap();
        assert_eq!(
            fingerprint("SendEmail", &[vars_a]),
            fingerprint("SendEmail", &[vars_b])
        );

        let base = fingerprint("SendEmail", std::slice::from_ref(&a));
        let mut changed = request();
        changed.input.to = vec!["john@example.com".into()];
        assert_ne!(fingerprint("SendEmail", &[changed]), base);
        let mut changed = request();
        changed.input.subject = "Hi!".into();
        assert_ne!(fingerprint("SendEmail", &[changed]), base);
        let mut changed = request();
        changed.flags.track_opens = true;
        assert_ne!(fingerprint("SendEmail", &[changed]), base);
        assert_ne!(fingerprint("SendBatch", &[a]), base);
    }

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        assert!(check_key("k", "order-1042").is_none());
        assert!(check_key("k", &"x".repeat(255)).is_none());
        for bad in [String::new(), "x".repeat(256), "a\nb".into(), "ключ".into()] {
            assert!(check_key("k", &bad).is_some(), "{bad:?}");
        }
    }
}
