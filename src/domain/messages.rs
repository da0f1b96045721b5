//! Messages as stored: their recipients (each a queue entry with its own
//! state), attachments and event timeline; the aggregate status; and the
//! read and control use cases (get, list, cancel, reschedule).

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::clock::Clock;
use super::error::{Error, FieldViolation, Result};
use super::paging::page_size;
use super::send::address::Address;

/// Where a message, or one recipient of it, stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Scheduled,
    Sent,
    Delivered,
    Deferred,
    Bounced,
    Failed,
    Cancelled,
    Suppressed,
    Opened,
    Clicked,
    Complained,
}

impl Status {
    /// Every status, in the contract's order.
    pub const ALL: [Status; 12] = [
        Status::Queued,
        Status::Scheduled,
        Status::Sent,
        Status::Delivered,
        Status::Deferred,
        Status::Bounced,
        Status::Failed,
        Status::Cancelled,
        Status::Suppressed,
        Status::Opened,
        Status::Clicked,
        Status::Complained,
    ];

    /// The stored form, for example "queued".
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Scheduled => "scheduled",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Deferred => "deferred",
            Status::Bounced => "bounced",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Suppressed => "suppressed",
            Status::Opened => "opened",
            Status::Clicked => "clicked",
            Status::Complained => "complained",
        }
    }

    /// Reads the stored form.
    pub fn parse(stored: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == stored)
    }

    /// Weight in the aggregate: the highest weight among a message's
    /// recipients is the message's status. Complaints and bounces win over
    /// engagement, engagement over delivery, delivery over progress;
    /// recipients that were never going to be sent (suppressed, cancelled)
    /// count only when nothing else is there.
    fn weight(self) -> u8 {
        match self {
            Status::Complained => 12,
            Status::Bounced => 11,
            Status::Clicked => 10,
            Status::Opened => 9,
            Status::Delivered => 8,
            Status::Sent => 7,
            Status::Failed => 6,
            Status::Deferred => 5,
            Status::Queued => 4,
            Status::Scheduled => 3,
            Status::Cancelled => 2,
            Status::Suppressed => 1,
        }
    }
}

/// The aggregate status of a message whose recipients stand at `statuses`.
pub fn aggregate(statuses: impl IntoIterator<Item = Status>) -> Status {
    statuses
        .into_iter()
        .max_by_key(|s| s.weight())
        .unwrap_or(Status::Queued)
}

/// What happened to a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Queued,
    Scheduled,
    Sent,
    Delivered,
    Deferred,
    Bounced,
    Complained,
    Opened,
    Clicked,
    Failed,
    Suppressed,
    Unsubscribed,
    Cancelled,
    Rescheduled,
}

impl EventType {
    /// Every type, in the contract's order.
    pub const ALL: [EventType; 14] = [
        EventType::Queued,
        EventType::Scheduled,
        EventType::Sent,
        EventType::Delivered,
        EventType::Deferred,
        EventType::Bounced,
        EventType::Complained,
        EventType::Opened,
        EventType::Clicked,
        EventType::Failed,
        EventType::Suppressed,
        EventType::Unsubscribed,
        EventType::Cancelled,
        EventType::Rescheduled,
    ];

    /// The stored form, for example "delivered" (webhooks say "email.delivered").
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Queued => "queued",
            EventType::Scheduled => "scheduled",
            EventType::Sent => "sent",
            EventType::Delivered => "delivered",
            EventType::Deferred => "deferred",
            EventType::Bounced => "bounced",
            EventType::Complained => "complained",
            EventType::Opened => "opened",
            EventType::Clicked => "clicked",
            EventType::Failed => "failed",
            EventType::Suppressed => "suppressed",
            EventType::Unsubscribed => "unsubscribed",
            EventType::Cancelled => "cancelled",
            EventType::Rescheduled => "rescheduled",
        }
    }

    /// Reads the stored form.
    pub fn parse(stored: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == stored)
    }
}

/// What is known about one event; stored as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventDetails {
    #[serde(skip_serializing_if = "is_zero")]
    pub smtp_code: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub enhanced_code: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub smtp_reply: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_mta: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// One entry of a message's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Position in the event stream; 0 before it is stored.
    pub cursor: i64,
    pub message_id: String,
    /// Empty for message-level events.
    pub recipient: String,
    pub event_type: EventType,
    /// The message's aggregate status after the event.
    pub status: Status,
    pub details: EventDetails,
    pub occurred_at: DateTime<Utc>,
}

/// Which header a recipient was addressed through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipientKind {
    To,
    Cc,
    Bcc,
}

impl RecipientKind {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientKind::To => "to",
            RecipientKind::Cc => "cc",
            RecipientKind::Bcc => "bcc",
        }
    }

    /// Reads the stored form.
    pub fn parse(stored: &str) -> Option<RecipientKind> {
        Some(match stored {
            "to" => RecipientKind::To,
            "cc" => RecipientKind::Cc,
            "bcc" => RecipientKind::Bcc,
            _ => return None,
        })
    }
}

/// One recipient of a message and its own delivery state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// Normalised address (punycode domain).
    pub email: String,
    pub name: String,
    pub kind: RecipientKind,
    pub status: Status,
    pub attempts: i32,
    pub last_response: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// What the recipient did with it, when opens or clicks are tracked.
    pub engagement: Engagement,
}

/// A recipient's tracked opens and clicks: when each happened first and
/// how many there were.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Engagement {
    pub first_opened_at: Option<DateTime<Utc>>,
    pub open_count: i32,
    pub first_clicked_at: Option<DateTime<Utc>>,
    pub click_count: i32,
}

/// An attachment; `content` is empty when only the description was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAttachment {
    pub filename: String,
    pub content_type: String,
    pub content_id: Option<String>,
    pub size_bytes: i64,
    pub content: Vec<u8>,
}

/// Where a message's content came from, for template sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRef {
    pub slug: String,
    pub version: i32,
    /// The variables it was rendered with (a JSON object).
    pub variables: serde_json::Map<String, serde_json::Value>,
}

/// A message: what was accepted, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: String,
    pub account_id: String,
    pub status: Status,
    pub from_email: String,
    pub from_name: String,
    /// Header addresses as given ("Name <a@b>" or "a@b"), normalised.
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Vec<String>,
    /// Rendered content.
    pub subject: String,
    pub html: String,
    pub text: String,
    pub template: Option<TemplateRef>,
    pub headers: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub metadata: Vec<(String, String)>,
    /// The RFC 5322 Message-ID, `<id@hostname>`, reused by every attempt.
    pub message_id_header: String,
    pub track_opens: bool,
    pub track_clicks: bool,
    pub unsubscribe: bool,
    pub test_mode: bool,
    /// Decoded bytes of bodies and attachments.
    pub size_bytes: i64,
    pub resent_from: Option<String>,
    pub idempotency_key: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub recipients: Vec<Recipient>,
    pub attachments: Vec<StoredAttachment>,
    /// Chronological; filled by `get`, empty in lists and on accept.
    pub events: Vec<Event>,
}

/// The filters of ListMessages; all optional, combined with AND.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageFilter {
    pub status: Option<Status>,
    pub tag: Option<String>,
    /// Recipient address key (lower case, punycode domain).
    pub to: Option<String>,
    /// Sender address key.
    pub from: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

impl MessageFilter {
    /// A short digest binding page tokens to the filters they were issued for.
    fn digest(&self) -> String {
        let mut hash = Sha256::new();
        for part in [
            self.status.map(Status::as_str).unwrap_or(""),
            self.tag.as_deref().unwrap_or(""),
            self.to.as_deref().unwrap_or(""),
            self.from.as_deref().unwrap_or(""),
            &self
                .created_after
                .map(|t| t.timestamp_micros().to_string())
                .unwrap_or_default(),
            &self
                .created_before
                .map(|t| t.timestamp_micros().to_string())
                .unwrap_or_default(),
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        hex::encode(&hash.finalize()[..6])
    }
}

/// Where a page of messages continues: after this (created_at, id), newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageCursor {
    pub created_at: i64,
    pub id: String,
}

/// A page of messages, newest first, without events.
#[derive(Clone, Debug)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub next_page_token: String,
}

/// Why a stored message cannot be cancelled or rescheduled.
#[derive(Clone, Debug, PartialEq)]
pub enum ChangeOutcome {
    /// Changed; the message as it is now.
    Changed(Box<Message>),
    /// No such message in the account.
    NotFound,
    /// The message is past the point where the change is possible; its status.
    TooLate(Status),
}

/// What the message use cases need from storage.
pub trait MessageStore: Send + Sync + 'static {
    /// The account's message with its recipients, attachment descriptions
    /// and chronological events.
    fn message(
        &self,
        account_id: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Message>>> + Send;
    /// The account's message with attachment contents, for a resend.
    fn message_with_content(
        &self,
        account_id: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Message>>> + Send;
    /// Up to `limit` messages matching `filter`, newest first, after `after`.
    fn list_messages(
        &self,
        account_id: &str,
        filter: &MessageFilter,
        after: Option<&MessageCursor>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Message>>> + Send;
    /// Cancels every recipient if all are scheduled, or queued and not
    /// claimed by a worker; records `event`. All or nothing.
    fn cancel_message(
        &self,
        account_id: &str,
        id: &str,
        event: &Event,
    ) -> impl Future<Output = Result<ChangeOutcome>> + Send;
    /// The account's message's built MIME: `None` when there is no such
    /// message, `Some(None)` when it has not been built yet.
    fn raw_mime(
        &self,
        account_id: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Option<Vec<u8>>>>> + Send;
    /// Moves a scheduled message to `at`; records `event`. Only while every
    /// recipient is still scheduled.
    fn reschedule_message(
        &self,
        account_id: &str,
        id: &str,
        at: DateTime<Utc>,
        event: &Event,
    ) -> impl Future<Output = Result<ChangeOutcome>> + Send;
}

/// ListMessages: default and largest page.
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 1000;

/// The read and control use cases of messages.
pub struct Messages<S> {
    store: S,
    clock: Arc<dyn Clock>,
    max_schedule_ahead: chrono::Duration,
}

impl<S: MessageStore> Messages<S> {
    /// Builds the use cases over a store.
    pub fn new(store: S, clock: Arc<dyn Clock>, max_schedule_ahead: chrono::Duration) -> Self {
        Messages {
            store,
            clock,
            max_schedule_ahead,
        }
    }

    /// GetMessage: the message with its recipients and timeline.
    pub async fn get(&self, account_id: &str, id: &str) -> Result<Message> {
        check_id(id)?;
        self.store
            .message(account_id, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// GetMessageContent: the raw MIME as built for sending. It exists once
    /// the first delivery attempt has started.
    pub async fn content(&self, account_id: &str, id: &str) -> Result<Vec<u8>> {
        check_id(id)?;
        match self.store.raw_mime(account_id, id).await? {
            None => Err(not_found(id)),
            Some(None) => Err(Error::FailedPrecondition(format!(
                "message `{id}` has not been built yet: its MIME exists once delivery starts"
            ))),
            Some(Some(raw)) => Ok(raw),
        }
    }

    /// ListMessages: one page, newest first.
    pub async fn list(
        &self,
        account_id: &str,
        filter: MessageFilter,
        requested_size: i32,
        page_token: &str,
    ) -> Result<MessagePage> {
        let mut violations = Vec::new();
        let size = page_size(requested_size, DEFAULT_PAGE, MAX_PAGE)
            .map_err(|v| violations.push(v))
            .unwrap_or(0);
        if let (Some(after), Some(before)) = (filter.created_after, filter.created_before)
            && after >= before
        {
            violations.push(FieldViolation::new(
                "created_before",
                "must be later than created_after",
            ));
        }
        let digest = filter.digest();
        let after = if page_token.is_empty() {
            None
        } else {
            match decode_token(page_token) {
                Some((cursor, bound)) if bound == digest => Some(cursor),
                Some(_) => {
                    violations.push(FieldViolation::new(
                        "page_token",
                        "was issued for different filters; repeat the filters of the first page",
                    ));
                    None
                }
                None => {
                    violations.push(FieldViolation::new(
                        "page_token",
                        "is not a page token issued by ListMessages",
                    ));
                    None
                }
            }
        };
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        let mut messages = self
            .store
            .list_messages(account_id, &filter, after.as_ref(), size + 1)
            .await?;
        let next_page_token = if messages.len() as u64 > size {
            messages.truncate(size as usize);
            let last = messages.last().expect("a non-empty page");
            encode_token(
                &MessageCursor {
                    created_at: last.created_at.timestamp_micros(),
                    id: last.id.clone(),
                },
                &digest,
            )
        } else {
            String::new()
        };
        Ok(MessagePage {
            messages,
            next_page_token,
        })
    }

    /// CancelMessage: scheduled, or queued and not yet claimed.
    pub async fn cancel(&self, account_id: &str, id: &str) -> Result<Message> {
        check_id(id)?;
        let event = Event {
            cursor: 0,
            message_id: id.to_owned(),
            recipient: String::new(),
            event_type: EventType::Cancelled,
            status: Status::Cancelled,
            details: EventDetails {
                reason: "cancelled through the API".into(),
                ..Default::default()
            },
            occurred_at: self.clock.now(),
        };
        match self.store.cancel_message(account_id, id, &event).await? {
            ChangeOutcome::Changed(message) => Ok(*message),
            ChangeOutcome::NotFound => Err(not_found(id)),
            ChangeOutcome::TooLate(status) => Err(Error::FailedPrecondition(format!(
                "message `{id}` is {} and can no longer be cancelled; only scheduled messages and queued ones not yet picked up for delivery can",
                status.as_str()
            ))),
        }
    }

    /// RescheduleMessage: a new time for a message that is still scheduled.
    pub async fn reschedule(
        &self,
        account_id: &str,
        id: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Message> {
        let now = self.clock.now();
        let mut violations = Vec::new();
        if let Err(Error::Validation(mut v)) = check_id(id) {
            violations.append(&mut v);
        }
        match at {
            None => violations.push(FieldViolation::new("scheduled_at", "required")),
            Some(at) if at <= now => {
                violations.push(FieldViolation::new("scheduled_at", "must be in the future"))
            }
            Some(at) if at > now + self.max_schedule_ahead => violations.push(FieldViolation::new(
                "scheduled_at",
                format!("at most {} days ahead", self.max_schedule_ahead.num_days()),
            )),
            Some(_) => {}
        }
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        let at = at.expect("checked above");
        let event = Event {
            cursor: 0,
            message_id: id.to_owned(),
            recipient: String::new(),
            event_type: EventType::Rescheduled,
            status: Status::Scheduled,
            details: EventDetails {
                reason: format!("rescheduled to {}", at.to_rfc3339()),
                ..Default::default()
            },
            occurred_at: now,
        };
        match self
            .store
            .reschedule_message(account_id, id, at, &event)
            .await?
        {
            ChangeOutcome::Changed(message) => Ok(*message),
            ChangeOutcome::NotFound => Err(not_found(id)),
            ChangeOutcome::TooLate(status) => Err(Error::FailedPrecondition(format!(
                "message `{id}` is {}; only scheduled messages can be rescheduled",
                status.as_str()
            ))),
        }
    }
}

/// NOT_FOUND for a message id.
pub fn not_found(id: &str) -> Error {
    Error::NotFound {
        kind: "message",
        id: id.to_owned(),
    }
}

/// A message id must be given; any other text is simply not found.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() {
        Err(Error::invalid("id", "required: a message id such as msg_…"))
    } else {
        Ok(())
    }
}

/// Reads a ListMessages filter address: matched case-insensitively, IDN
/// domains in punycode.
pub fn filter_address(field: &str, raw: &str) -> Result<Option<String>> {
    if raw.is_empty() {
        return Ok(None);
    }
    Address::parse(raw)
        .map(|a| Some(a.key()))
        .map_err(|e| Error::invalid(field, e))
}

fn encode_token(cursor: &MessageCursor, digest: &str) -> String {
    hex::encode(format!("m1:{}:{}:{digest}", cursor.created_at, cursor.id))
}

fn decode_token(token: &str) -> Option<(MessageCursor, String)> {
    let raw = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let rest = raw.strip_prefix("m1:")?;
    let mut parts = rest.splitn(3, ':');
    let created_at = parts.next()?.parse().ok()?;
    let id = parts.next()?.to_owned();
    let digest = parts.next()?.to_owned();
    if !super::ids::is_id(&id, "msg") {
        return None;
    }
    Some((MessageCursor { created_at, id }, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_outcomes_win_over_engagement_and_engagement_over_delivery() {
        use Status::*;
        assert_eq!(aggregate([Delivered, Opened, Clicked]), Clicked);
        assert_eq!(aggregate([Clicked, Bounced]), Bounced);
        assert_eq!(aggregate([Opened, Complained, Bounced]), Complained);
        assert_eq!(aggregate([Queued, Sent]), Sent);
        assert_eq!(aggregate([Suppressed, Queued]), Queued);
        assert_eq!(aggregate([Suppressed, Suppressed]), Suppressed);
        assert_eq!(aggregate([Scheduled]), Scheduled);
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_filters() {
        let cursor = MessageCursor {
            created_at: 1_700_000_000_000_000,
            id: crate::domain::ids::new_id("msg"),
        };
        let filter = MessageFilter {
            tag: Some("welcome".into()),
            ..Default::default()
        };
        let token = encode_token(&cursor, &filter.digest());
        let (back, digest) = decode_token(&token).unwrap();
        assert_eq!(back, cursor);
        assert_eq!(digest, filter.digest());
        assert_ne!(digest, MessageFilter::default().digest());
        assert!(decode_token("zz").is_none());
        assert!(decode_token(&hex::encode("m1:1:msg_x:abc")).is_none());
    }
}
