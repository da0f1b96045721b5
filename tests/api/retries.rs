//! Leases, backoff and expiry against FaultSmtp, through the real server.
//!
//! D5: a worker that is slow but healthy keeps its lease by renewing it, so
//! nothing is sent twice. D6: a relay that keeps refusing gets attempts
//! spaced by the doubling backoff (±20 % jitter, capped). D8: a message that
//! is never deliverable fails with reason `expired` at its maximum age and
//! is not tried again.

use std::collections::HashSet;
use std::time::Duration;

use posthorn::proto::v1;

use crate::delivery::{messages, next_event, send, watch};
use crate::fault_smtp::{FaultSmtp, Script};
use crate::helpers::{Backend, KeyHeader, TestApp, try_spawn_app_with, with_key};
use crate::send::inline;

on_both_databases_with!(
    a_slow_but_healthy_worker_keeps_its_lease_and_nothing_goes_twice_d5,
    refused_attempts_are_spaced_by_the_doubling_backoff_d6,
    a_message_never_deliverable_fails_expired_at_its_max_age_d8,
);

fn to(address: &str) -> v1::SendEmailRequest {
    v1::SendEmailRequest {
        to: vec![address.to_owned()],
        ..inline()
    }
}

async fn message(app: &TestApp, id: &str) -> v1::Message {
    messages(app)
        .get_message(with_key(
            v1::GetMessageRequest { id: id.to_owned() },
            KeyHeader::Bearer,
            &app.account_a.key,
        ))
        .await
        .expect("the message")
        .into_inner()
        .message
        .expect("a message")
}

/// The events of message `id` up to and including the first of type `last`.
async fn timeline_until(app: &TestApp, id: &str, last: v1::EventType) -> Vec<v1::MessageEvent> {
    let request = v1::WatchMessagesRequest {
        message_id: id.to_owned(),
        ..Default::default()
    };
    let mut stream = watch(app, &app.account_a.key, request).await;
    let mut events = Vec::new();
    loop {
        let event = next_event(&mut stream).await;
        let done = event.r#type == last as i32;
        events.push(event);
        if done {
            return events;
        }
    }
}

fn seconds(event: &v1::MessageEvent) -> f64 {
    let at = event.occurred_at.expect("a time");
    at.seconds as f64 + f64::from(at.nanos) / 1e9
}

/// Four messages through one relay connection whose every 250 takes 1.2 s:
/// the last waits about 4.8 s in all, longer than the 3 s lease. Renewed
/// every second, no lease runs out, so none is taken over and sent again.
/// (Without renewal the last is taken over at 3 s and sent twice.)
async fn a_slow_but_healthy_worker_keeps_its_lease_and_nothing_goes_twice_d5(backend: Backend) {
    let sink = FaultSmtp::start(Script {
        data_delay: Duration::from_millis(1200),
        ..Script::default()
    })
    .await;
    let url = sink.url("?max_connections=1&timeout=2");
    let Some(app) = try_spawn_app_with(backend, |s| {
        s.deliver = true;
        s.transport = url;
        s.delivery_lease = Duration::from_secs(3);
        s.delivery_concurrency = 4;
    })
    .await
    else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    let key = app.account_a.key.clone();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(send(&app, &key, to(&format!("r{i}@example.com"))).await);
    }
    for id in &ids {
        let events = timeline_until(&app, id, v1::EventType::Sent).await;
        let kinds: Vec<i32> = events.iter().map(|e| e.r#type).collect();
        assert_eq!(
            kinds,
            [v1::EventType::Queued as i32, v1::EventType::Sent as i32],
            "no attempt was taken over: {events:?}"
        );
        assert_eq!(message(&app, id).await.recipients[0].attempts, 1);
    }
    // A taken-over attempt would queue for the one connection before this
    // sentinel, so once the sentinel is in, any duplicate is too.
    send(&app, &key, to("sentinel@example.com")).await;
    let mut n = 5;
    let accepted = loop {
        sink.wait_for(n).await;
        let accepted = sink.accepted();
        if accepted.iter().any(|a| a.to == ["sentinel@example.com"]) {
            break accepted;
        }
        n = accepted.len() + 1;
    };
    let recipients: HashSet<Vec<String>> = accepted.iter().map(|a| a.to.clone()).collect();
    assert_eq!(accepted.len(), 5, "each sent once: {recipients:?}");
    assert_eq!(recipients.len(), 5);
    let accepted = &accepted[..4];
    let last = accepted.iter().map(|a| a.at).max().unwrap();
    let first = accepted.iter().map(|a| a.at).min().unwrap();
    assert!(
        (last - first).num_milliseconds() >= 3000,
        "the last one was held past the lease: {} ms",
        (last - first).num_milliseconds()
    );
}

/// A recipient the relay always refuses with 450: its attempts come about
/// 1 s, 2 s and 4 s apart (the cap), each gap within the ±20 % jitter plus
/// the pool's poll interval.
async fn refused_attempts_are_spaced_by_the_doubling_backoff_d6(backend: Backend) {
    let sink = FaultSmtp::start(Script::default()).await;
    let url = sink.url("");
    let Some(app) = try_spawn_app_with(backend, |s| {
        s.deliver = true;
        s.transport = url;
        s.retry.first = Duration::from_secs(1);
        s.retry.max = Duration::from_secs(4);
    })
    .await
    else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    let id = send(&app, &app.account_a.key, to("tempfail@example.com")).await;
    let request = v1::WatchMessagesRequest {
        message_id: id.clone(),
        types: vec![v1::EventType::Deferred as i32],
        ..Default::default()
    };
    let mut stream = watch(&app, &app.account_a.key, request).await;
    let mut deferred = Vec::new();
    while deferred.len() < 4 {
        deferred.push(next_event(&mut stream).await);
    }
    for event in &deferred {
        let details = event.details.clone().unwrap_or_default();
        assert_eq!(details.smtp_code, 450, "{event:?}");
        assert_eq!(details.enhanced_code, "4.2.0");
    }
    let expected = [1.0, 2.0, 4.0];
    for (i, pair) in deferred.windows(2).enumerate() {
        let gap = seconds(&pair[1]) - seconds(&pair[0]);
        let e = expected[i];
        assert!(
            gap >= 0.8 * e - 0.05 && gap <= 1.2 * e + 1.0,
            "gap {i}: {gap:.2} s, expected {e} s ±20 %"
        );
    }
    assert_eq!(sink.count("RCPT"), 4, "one attempt per deferral, no storm");
}

/// A recipient the relay always refuses, with a 3 s maximum age and 1 s
/// between attempts: the message fails with reason `expired`, and the
/// recipient has no next attempt.
async fn a_message_never_deliverable_fails_expired_at_its_max_age_d8(backend: Backend) {
    let sink = FaultSmtp::start(Script::default()).await;
    let url = sink.url("");
    let Some(app) = try_spawn_app_with(backend, |s| {
        s.deliver = true;
        s.transport = url;
        s.retry.first = Duration::from_secs(1);
        s.retry.max = Duration::from_secs(1);
        s.retry.max_age = Duration::from_secs(3);
    })
    .await
    else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    let id = send(&app, &app.account_a.key, to("tempfail@example.com")).await;
    let events = timeline_until(&app, &id, v1::EventType::Failed).await;
    let failed = events.last().unwrap();
    let details = failed.details.clone().unwrap_or_default();
    assert_eq!(details.reason, "expired", "{failed:?}");
    assert_eq!(failed.status, v1::MessageStatus::Failed as i32);
    let created = seconds(&events[0]);
    let age = seconds(failed) - created;
    assert!(
        (1.5..=5.0).contains(&age),
        "expired at {age:.1} s of a 3 s maximum age (± one backoff step)"
    );
    let deferred = events
        .iter()
        .filter(|e| e.r#type == v1::EventType::Deferred as i32)
        .count();
    assert!(deferred >= 1, "{events:?}");
    let stored = message(&app, &id).await;
    assert_eq!(stored.status, v1::MessageStatus::Failed as i32);
    let recipient = &stored.recipients[0];
    assert!(
        recipient.next_attempt_at.is_none(),
        "no next attempt: {recipient:?}"
    );
    assert_eq!(
        sink.count("RCPT") as i32,
        recipient.attempts,
        "every attempt is counted, and none came after the failure"
    );
}
