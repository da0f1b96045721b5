//! `send_email`: SendEmail with the send marked `source: mcp`, then, with
//! `wait_for`, the message's events from WatchMessages passed on as MCP
//! progress until it is sent or delivered, ends otherwise, or time is up.

use std::fmt;
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::RequestContext;
use serde_json::{Map, Value as Json, json};

use super::tools::{DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS, WAIT_FOR, WAIT_SECONDS};
use super::{Answer, Failure, Tool, call, json_of};
use crate::gateway::MappingError;

/// How far `send_email` waits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Sent,
    Delivered,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Sent => "sent",
            Target::Delivered => "delivered",
        })
    }
}

/// Whether a message of `status` (the REST door's short name) has got
/// as far as `target`.
fn reached(status: &str, target: Target) -> bool {
    match target {
        Target::Sent => matches!(
            status,
            "sent" | "delivered" | "opened" | "clicked" | "complained"
        ),
        Target::Delivered => matches!(status, "delivered" | "opened" | "clicked" | "complained"),
    }
}

/// Whether a message of `status` will not move on by itself soon: it has
/// ended, or waits for a scheduled time.
fn stopped(status: &str) -> bool {
    matches!(
        status,
        "bounced" | "failed" | "cancelled" | "suppressed" | "scheduled"
    )
}

fn target(arguments: &Map<String, Json>) -> Result<Option<Target>, MappingError> {
    match arguments.get(WAIT_FOR) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s == "sent" => Ok(Some(Target::Sent)),
        Some(Json::String(s)) if s == "delivered" => Ok(Some(Target::Delivered)),
        Some(_) => Err(MappingError::new(
            WAIT_FOR,
            "must be \"sent\" or \"delivered\"",
        )),
    }
}

/// Marks the send as made through MCP in its metadata. Metadata that is
/// not an object is left for the request's decoding to refuse.
fn mark(arguments: &mut Map<String, Json>) {
    let metadata = arguments.entry("metadata").or_insert(Json::Null);
    if metadata.is_null() {
        *metadata = json!({});
    }
    if let Json::Object(metadata) = metadata {
        metadata.insert("source".into(), json!("mcp"));
    }
}

/// How long `send_email` waits, from its `wait_seconds` argument.
fn wait_limit(arguments: &Map<String, Json>) -> Result<Duration, MappingError> {
    match arguments.get(WAIT_SECONDS) {
        None | Some(Json::Null) => Ok(Duration::from_secs(DEFAULT_WAIT_SECONDS)),
        Some(value) => value
            .as_u64()
            .filter(|n| (1..=MAX_WAIT_SECONDS).contains(n))
            .map(Duration::from_secs)
            .ok_or_else(|| {
                MappingError::new(
                    WAIT_SECONDS,
                    format!(
                        "must be a whole number of seconds from 1 to {}",
                        MAX_WAIT_SECONDS
                    ),
                )
            }),
    }
}

/// A progress line for an event: its type, and the recipient it concerns.
fn describe(event: &Json) -> String {
    let kind = event["type"].as_str().unwrap_or("event");
    match event["recipient"].as_str().filter(|r| !r.is_empty()) {
        Some(recipient) => format!("{kind}: {recipient}"),
        None => kind.to_owned(),
    }
}

pub(super) async fn send(
    rpc: &super::call::Rpc,
    tool: &Tool,
    mut arguments: Map<String, Json>,
    headers: &http::HeaderMap,
    context: &RequestContext<RoleServer>,
) -> Result<Answer, Failure> {
    let wait = target(&arguments).map_err(Failure::Arguments)?;
    let limit = wait_limit(&arguments).map_err(Failure::Arguments)?;
    arguments.remove(WAIT_FOR);
    arguments.remove(WAIT_SECONDS);
    mark(&mut arguments);

    let mut answer = call(rpc, tool, arguments, headers).await?;
    let Some(wait) = wait else {
        return Ok(answer);
    };
    let id = answer.json["id"].as_str().unwrap_or_default().to_owned();
    let mut status = answer.json["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if reached(&status, wait) || stopped(&status) {
        answer.note = (!reached(&status, wait))
            .then(|| format!("The message is {status}: it will not be {wait} now."));
        return Ok(answer);
    }

    let watch = crate::proto::method("posthorn.v1.MessagesService.WatchMessages")
        .expect("the contract has WatchMessages");
    let request = crate::gateway::from_json(watch.input(), &json!({"message_id": id}))
        .map_err(Failure::Arguments)?;
    let mut events = rpc
        .server_streaming(&watch, request, headers)
        .await
        .map_err(Failure::Rpc)?;
    let token = context.meta.get_progress_token();
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let mut seen = 0u32;
    let ended = loop {
        let item = tokio::select! {
            _ = &mut deadline => break false,
            _ = context.ct.cancelled() => break false,
            item = events.message() => item,
        };
        let Some(response) = item.map_err(Failure::Rpc)? else {
            break true;
        };
        let event = json_of(&response)?["event"].take();
        seen += 1;
        if let Some(token) = &token {
            let progress = ProgressNotificationParam::new(token.clone(), f64::from(seen))
                .with_message(describe(&event));
            // A client that went away gets no progress; the send stands.
            let _ = context.peer.notify_progress(progress).await;
        }
        if let Some(now) = event["status"].as_str() {
            status = now.to_owned();
        }
        if reached(&status, wait) || stopped(&status) {
            break true;
        }
    };
    answer.json["status"] = json!(status);
    answer.note = if reached(&status, wait) {
        None
    } else if ended {
        Some(format!(
            "The message is {status}: it will not be {wait} now."
        ))
    } else {
        Some(format!(
            "The message is still {status} after {} s, not yet {wait}. Call get_email_status with id {id} to follow it.",
            limit.as_secs()
        ))
    };
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_is_past_sent_and_a_bounce_ends_the_wait() {
        assert!(reached("delivered", Target::Sent));
        assert!(!reached("sent", Target::Delivered));
        assert!(reached("opened", Target::Delivered));
        assert!(!reached("deferred", Target::Sent));
        assert!(!stopped("deferred"));
        assert!(stopped("bounced") && !reached("bounced", Target::Sent));
    }

    #[test]
    fn sends_are_marked_as_made_through_mcp() {
        let mut bare = Map::new();
        mark(&mut bare);
        assert_eq!(Json::Object(bare), json!({"metadata": {"source": "mcp"}}));
        let mut given = json!({"metadata": {"order": "42", "source": "agent"}})
            .as_object()
            .cloned()
            .unwrap();
        mark(&mut given);
        assert_eq!(
            Json::Object(given),
            json!({"metadata": {"order": "42", "source": "mcp"}})
        );
    }

    #[test]
    fn wait_for_takes_sent_or_delivered() {
        let args = |v: Json| json!({ "wait_for": v }).as_object().cloned().unwrap();
        assert_eq!(target(&args(json!("sent"))).unwrap(), Some(Target::Sent));
        assert_eq!(target(&Map::new()).unwrap(), None);
        assert_eq!(
            target(&args(json!("opened"))).unwrap_err().field,
            "wait_for"
        );
    }

    #[test]
    fn the_wait_is_bounded() {
        let args = |v: Json| v.as_object().cloned().unwrap();
        assert_eq!(wait_limit(&Map::new()).unwrap(), Duration::from_secs(30));
        assert_eq!(
            wait_limit(&args(json!({"wait_seconds": 5}))).unwrap(),
            Duration::from_secs(5)
        );
        for bad in [json!(0), json!(121), json!("5"), json!(1.5)] {
            let error = wait_limit(&args(json!({"wait_seconds": bad}))).unwrap_err();
            assert_eq!(error.field, "wait_seconds");
        }
    }
}
