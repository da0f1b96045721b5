//! Conversions between protobuf well-known types and domain values.

use chrono::{DateTime, Utc};
use tonic::Status;

use super::status::to_status;
use crate::domain::Error;
use crate::domain::messages::{Event, EventType, Message, RecipientKind, Status as MessageStatus};
use crate::proto::v1 as pb;

/// A UTC time as a protobuf Timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf Timestamp as a UTC time; INVALID_ARGUMENT naming `field` when
/// it is out of range.
pub fn from_timestamp(t: &prost_types::Timestamp, field: &str) -> Result<DateTime<Utc>, Status> {
    read_timestamp(t, field).map_err(to_status)
}

/// A protobuf Timestamp as a UTC time, or the domain's validation error.
pub fn read_timestamp(t: &prost_types::Timestamp, field: &str) -> Result<DateTime<Utc>, Error> {
    u32::try_from(t.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| Error::invalid(field, "not a valid timestamp"))
}

/// A message status as the contract's enum.
pub fn status_to_proto(status: MessageStatus) -> i32 {
    use pb::MessageStatus as P;
    (match status {
        MessageStatus::Queued => P::Queued,
        MessageStatus::Scheduled => P::Scheduled,
        MessageStatus::Sent => P::Sent,
        MessageStatus::Delivered => P::Delivered,
        MessageStatus::Deferred => P::Deferred,
        MessageStatus::Bounced => P::Bounced,
        MessageStatus::Failed => P::Failed,
        MessageStatus::Cancelled => P::Cancelled,
        MessageStatus::Suppressed => P::Suppressed,
        MessageStatus::Opened => P::Opened,
        MessageStatus::Clicked => P::Clicked,
        MessageStatus::Complained => P::Complained,
    }) as i32
}

/// The contract's status enum as a domain status; `None` for unspecified.
pub fn status_from_proto(value: i32) -> Option<MessageStatus> {
    MessageStatus::ALL
        .into_iter()
        .find(|s| status_to_proto(*s) == value)
}

/// An event type as the contract's enum.
pub fn event_type_to_proto(t: EventType) -> i32 {
    use pb::EventType as P;
    (match t {
        EventType::Queued => P::Queued,
        EventType::Scheduled => P::Scheduled,
        EventType::Sent => P::Sent,
        EventType::Delivered => P::Delivered,
        EventType::Deferred => P::Deferred,
        EventType::Bounced => P::Bounced,
        EventType::Complained => P::Complained,
        EventType::Opened => P::Opened,
        EventType::Clicked => P::Clicked,
        EventType::Failed => P::Failed,
        EventType::Suppressed => P::Suppressed,
        EventType::Unsubscribed => P::Unsubscribed,
        EventType::Cancelled => P::Cancelled,
        EventType::Rescheduled => P::Rescheduled,
    }) as i32
}

/// The domain event type of a proto value; `None` for unspecified or
/// unknown numbers.
pub fn event_type_from_proto(value: i32) -> Option<EventType> {
    use pb::EventType as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Queued => EventType::Queued,
        P::Scheduled => EventType::Scheduled,
        P::Sent => EventType::Sent,
        P::Delivered => EventType::Delivered,
        P::Deferred => EventType::Deferred,
        P::Bounced => EventType::Bounced,
        P::Complained => EventType::Complained,
        P::Opened => EventType::Opened,
        P::Clicked => EventType::Clicked,
        P::Failed => EventType::Failed,
        P::Suppressed => EventType::Suppressed,
        P::Unsubscribed => EventType::Unsubscribed,
        P::Cancelled => EventType::Cancelled,
        P::Rescheduled => EventType::Rescheduled,
    })
}

/// One timeline event as the contract's message.
pub fn event_to_proto(e: &Event) -> pb::MessageEvent {
    let d = &e.details;
    pb::MessageEvent {
        cursor: e.cursor,
        message_id: e.message_id.clone(),
        recipient: e.recipient.clone(),
        r#type: event_type_to_proto(e.event_type),
        status: status_to_proto(e.status),
        occurred_at: Some(timestamp(e.occurred_at)),
        details: Some(pb::EventDetails {
            smtp_code: d.smtp_code,
            enhanced_code: d.enhanced_code.clone(),
            smtp_reply: d.smtp_reply.clone(),
            remote_mta: d.remote_mta.clone(),
            user_agent: d.user_agent.clone(),
            ip: d.ip.clone(),
            url: d.url.clone(),
            reason: d.reason.clone(),
        }),
    }
}

/// A stored message as the contract's message.
pub fn message_to_proto(m: Message) -> pb::Message {
    pb::Message {
        status: status_to_proto(m.status),
        from_email: m.from_email,
        from_name: m.from_name,
        to: m.to,
        cc: m.cc,
        bcc: m.bcc,
        reply_to: m.reply_to,
        subject: m.subject,
        template: m
            .template
            .as_ref()
            .map(|t| t.slug.clone())
            .unwrap_or_default(),
        template_version: m.template.as_ref().map_or(0, |t| t.version),
        variables: m.template.map(|t| json_to_struct(&t.variables)),
        tags: m.tags,
        metadata: m.metadata.into_iter().collect(),
        message_id_header: m.message_id_header,
        track_opens: m.track_opens,
        track_clicks: m.track_clicks,
        attachments: m
            .attachments
            .into_iter()
            .map(|a| pb::AttachmentInfo {
                filename: a.filename,
                content_type: a.content_type,
                size_bytes: a.size_bytes,
                content_id: a.content_id.unwrap_or_default(),
            })
            .collect(),
        recipients: m
            .recipients
            .into_iter()
            .map(|r| pb::Recipient {
                kind: (match r.kind {
                    RecipientKind::To => pb::RecipientKind::To,
                    RecipientKind::Cc => pb::RecipientKind::Cc,
                    RecipientKind::Bcc => pb::RecipientKind::Bcc,
                }) as i32,
                status: status_to_proto(r.status),
                email: r.email,
                name: r.name,
                attempts: r.attempts,
                last_response: r.last_response,
                next_attempt_at: r.next_attempt_at.map(timestamp),
                updated_at: Some(timestamp(r.updated_at)),
                first_opened_at: r.engagement.first_opened_at.map(timestamp),
                open_count: r.engagement.open_count,
                first_clicked_at: r.engagement.first_clicked_at.map(timestamp),
                click_count: r.engagement.click_count,
            })
            .collect(),
        events: m.events.iter().map(event_to_proto).collect(),
        created_at: Some(timestamp(m.created_at)),
        scheduled_at: m.scheduled_at.map(timestamp),
        resent_from: m.resent_from.unwrap_or_default(),
        test_mode: m.test_mode,
        id: m.id,
    }
}

/// A protobuf Value as JSON.
pub fn value_to_json(value: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(|n| {
                // Whole numbers read back as integers, as a person wrote them.
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                        serde_json::Value::from(f as i64)
                    }
                    _ => serde_json::Value::Number(n),
                }
            })
            .unwrap_or(serde_json::Value::Null),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(struct_to_json(s)),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(value_to_json).collect())
        }
    }
}

/// A protobuf Struct as a JSON object.
pub fn struct_to_json(s: &prost_types::Struct) -> serde_json::Map<String, serde_json::Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

/// JSON as a protobuf Value.
pub fn json_to_value(json: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A JSON object as a protobuf Struct.
pub fn json_to_struct(map: &serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

/// The paths of an update mask, each checked against `allowed`.
pub(super) fn mask_paths(
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
) -> Result<Option<Vec<String>>, Status> {
    let Some(mask) = mask else { return Ok(None) };
    if mask.paths.is_empty() {
        return Ok(None);
    }
    let mut violations = Vec::new();
    for path in &mask.paths {
        if !allowed.contains(&path.as_str()) {
            violations.push(crate::domain::FieldViolation::new(
                "update_mask",
                format!(
                    "`{path}` is not an updatable field; use {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    if violations.is_empty() {
        Ok(Some(mask.paths.clone()))
    } else {
        Err(to_status(Error::Validation(violations)))
    }
}

/// Whether a field is to be written: named in the mask, or (without a
/// mask) given a non-default value.
pub(super) fn wanted(mask: &Option<Vec<String>>, path: &str, non_default: bool) -> bool {
    match mask {
        Some(paths) => paths.iter().any(|p| p == path),
        None => non_default,
    }
}
