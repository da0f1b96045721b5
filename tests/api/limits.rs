//! Sending abuse (S7): the per-key request rate and the per-account daily
//! recipient quota, exact under concurrency, over gRPC and REST.

use std::sync::Arc;

use posthorn::domain::accounts::AccountStore;
use posthorn::domain::limits::Overrides;
use posthorn::proto::v1::send_service_client::SendServiceClient;
use reqwest::StatusCode;
use tonic_types::StatusExt;

use crate::helpers::{
    Backend, KeyHeader, TestApp, json_reason, reason, spawn_app, try_spawn_app_with, with_key,
};
use crate::send::{inline, inline_json, message_count, post};

/// Sets account A's own daily recipient quota.
async fn set_daily_quota(app: &TestApp, quota: u64) {
    app.store
        .set_account_overrides(
            &app.account_a.id,
            Overrides {
                daily_quota: Some(quota),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

/// The code and message of each refused send, for an assertion's message.
fn refusals(results: &[Result<(), tonic::Status>]) -> Vec<String> {
    results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|status| format!("{:?}: {}", status.code(), status.message()))
        .collect()
}

/// Sends `n` single-recipient emails at once (released by a barrier) over
/// gRPC; returns the answers.
async fn burst(app: &TestApp, key: &str, n: usize) -> Vec<Result<(), tonic::Status>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (barrier, channel, key) = (barrier.clone(), app.channel.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut request = inline();
            request.to = vec![format!("r{i}@example.com")];
            barrier.wait().await;
            SendServiceClient::new(channel)
                .send_email(with_key(request, KeyHeader::Bearer, &key))
                .await
                .map(|_| ())
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test]
async fn a_key_gets_its_burst_then_429_with_retry_after_and_ratelimit_headers() {
    let app = try_spawn_app_with(Backend::Sqlite, |s| {
        s.policy.rate_per_second = 0.01;
        s.policy.burst = 10;
    })
    .await
    .unwrap();
    let key = &app.account_a.key;
    let results = burst(&app, key, 30).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, 10, "exactly the burst passes");
    for status in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(reason(status), "RATE_LIMITED");
        let delay = status
            .get_error_details()
            .retry_info()
            .unwrap()
            .retry_delay
            .unwrap();
        assert!(delay.as_secs() >= 90, "one token takes 100 s: {delay:?}");
        let retry_after: u64 = status
            .metadata()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((90..=100).contains(&retry_after), "{retry_after}");
    }
    // Over REST: 429 with Retry-After and the RateLimit fields.
    let (status, headers, json) = post(&app, key, "/v1/send", &inline_json(), &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{json}");
    assert_eq!(json_reason(&json), "RATE_LIMITED");
    let header = |name: &str| headers[name].to_str().unwrap().parse::<u64>().unwrap();
    assert!((90..=100).contains(&header("retry-after")));
    assert_eq!(header("ratelimit-limit"), 10);
    assert_eq!(header("ratelimit-remaining"), 0);
    assert!(header("ratelimit-reset") >= 90);
    // Every key has its own bucket; a successful answer reports what is left.
    let response = app
        .http
        .get(format!("{}/v1/messages", app.base_url))
        .header("x-api-key", &app.account_b.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["ratelimit-limit"], "10");
    assert_eq!(response.headers()["ratelimit-remaining"], "9");
    use sea_orm::ConnectionTrait;
    let stored = app
        .store_connection()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM messages",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(stored, 10, "only the admitted sends exist");
}

#[tokio::test]
async fn an_account_override_replaces_the_default_rate() {
    let app = try_spawn_app_with(Backend::Sqlite, |s| {
        s.policy.rate_per_second = 0.01;
        s.policy.burst = 2;
    })
    .await
    .unwrap();
    app.store
        .set_account_overrides(
            &app.account_b.id,
            Overrides {
                burst: Some(25),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let results = burst(&app, &app.account_a.key, 10).await;
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(reason)
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "{errors:?}"
    );
    let barrier_key = app.account_b.key.clone();
    let barrier = Arc::new(tokio::sync::Barrier::new(30));
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (barrier, channel, key) = (barrier.clone(), app.channel.clone(), barrier_key.clone());
        tasks.push(tokio::spawn(async move {
            let mut request = inline();
            request.from_email = "hello@globex.example".into();
            barrier.wait().await;
            SendServiceClient::new(channel)
                .send_email(with_key(request, KeyHeader::Bearer, &key))
                .await
                .is_ok()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += usize::from(task.await.unwrap());
    }
    assert_eq!(ok, 25, "account B's own burst applies");
}

crate::on_both_databases! {
    async fn the_daily_quota_is_exact_under_concurrency_and_refusals_are_not_cached(app: TestApp) {
        let key = app.account_a.key.clone();
        set_daily_quota(&app, 20).await;
        let results = burst(&app, &key, 30).await;
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 20, "exactly the quota, never one more; refused: {:?}", refusals(&results));
        for status in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
            assert_eq!(reason(status), "DAILY_QUOTA_EXCEEDED");
            let delay = status.get_error_details().retry_info().unwrap().retry_delay.unwrap();
            assert!(delay.as_secs() <= 86_400 && delay.as_secs() >= 1);
            assert!(status.message().contains("20 recipients"), "{}", status.message());
        }
        // Over REST: 429 with Retry-After until the next UTC midnight.
        let (status, headers, json) = post(&app, &key, "/v1/send", &inline_json(), &[("idempotency-key", "after-quota")]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{json}");
        assert_eq!(json_reason(&json), "DAILY_QUOTA_EXCEEDED");
        let retry_after: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        let now = chrono::Utc::now().timestamp();
        let midnight = (now / 86_400 + 1) * 86_400;
        assert!((retry_after - (midnight - now)).abs() <= 2, "{retry_after}");
        // Recipients count, not requests: a 2-recipient send does not fit either.
        assert_eq!(message_count(&app, &key).await, 20);

        // The refusal was not stored under its key: with room again, the
        // same key runs the send.
        set_daily_quota(&app, 0).await;
        let (status, headers, json) = post(&app, &key, "/v1/send", &inline_json(), &[("idempotency-key", "after-quota")]).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert!(headers.get("idempotent-replayed").is_none());
    }
}

/// Another write committing through the pool while an over-quota batch is
/// decided (a key's last-used time, a template saved, a contact changed)
/// does not fail the batch: every send is accepted or refused for the
/// quota, none answered UNAVAILABLE. The batch that does not fit is decided
/// in a transaction that reads before it writes; on SQLite it has to hold
/// the write lock from its start, or the first write after a foreign
/// commit is refused.
#[tokio::test]
async fn the_daily_quota_is_decided_while_other_writes_commit() {
    use sea_orm::ConnectionTrait;
    use std::sync::atomic::{AtomicBool, Ordering};

    let app = spawn_app().await;
    let key = app.account_a.key.clone();
    let db = app.store_connection().clone();
    db.execute_unprepared(
        "CREATE TABLE other_writes (n INTEGER); INSERT INTO other_writes VALUES (0)",
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writes = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut committed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                db.execute_unprepared("UPDATE other_writes SET n = n + 1")
                    .await
                    .unwrap();
                committed += 1;
                tokio::task::yield_now().await;
            }
            committed
        }
    });
    let mut accepted = 0;
    for round in 0..3 {
        // Room for 20 more each round.
        set_daily_quota(&app, 20 * (round + 1)).await;
        let results = burst(&app, &key, 30).await;
        let refused = refusals(&results);
        for status in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(
                reason(status),
                "DAILY_QUOTA_EXCEEDED",
                "round {round}: {refused:?}"
            );
        }
        accepted += results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            accepted,
            20 * (round as usize + 1),
            "round {round}: {refused:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    assert!(writes.await.unwrap() > 0, "the other writes ran");
}
