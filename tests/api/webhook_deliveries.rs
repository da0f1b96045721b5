//! Webhook deliveries end to end: the outbox written with each event, the
//! dispatcher's signed requests checked by the reference verifier (W1),
//! the retry schedule on a clock the test moves, Retry-After, 410 and 3xx
//! (W2), a kill between the receiver's 2xx and the record (W3), hostile
//! receivers (W4), tenant isolation (W5), the delivery log and replay.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use posthorn::domain::clock::ManualClock;
use posthorn::proto::v1;
use posthorn::proto::v1::webhooks_service_client::WebhooksServiceClient;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::{Backend, KeyHeader, TestApp, json_reason, with_key};
use crate::webhooks::{rest, verified};

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    /// A status with one extra header.
    With(u16, &'static str, String),
    /// Never answers.
    Hang,
    /// 200 and a body that never ends.
    Endless,
}

/// A request the receiver got.
pub type Got = (http::HeaderMap, Vec<u8>);

/// A scripted webhook receiver on loopback (FaultHttp): the n-th request
/// (from 0) is answered as the script says.
pub struct Hook {
    pub url: String,
    got: Arc<Mutex<Vec<Got>>>,
    count: watch::Receiver<usize>,
}

impl Hook {
    pub async fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Hook {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let (counter, count) = watch::channel(0usize);
        let (kept, script, counter) = (got.clone(), Arc::new(script), Arc::new(counter));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
                let (kept, script, counter) = (kept.clone(), script.clone(), counter.clone());
                async move {
                    let n = {
                        let mut kept = kept.lock().unwrap();
                        kept.push((headers, body.to_vec()));
                        kept.len() - 1
                    };
                    counter.send_replace(n + 1);
                    answer(script(n)).await
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Hook {
            url: format!("http://{addr}/hook"),
            got,
            count,
        }
    }

    /// Waits until `n` requests arrived, and returns every one so far.
    pub async fn wait_for(&self, n: usize) -> Vec<Got> {
        let mut count = self.count.clone();
        tokio::time::timeout(Duration::from_secs(30), count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} requests arrive at {}", self.url))
            .unwrap();
        self.requests()
    }

    pub fn requests(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

async fn answer(answer: Answer) -> axum::response::Response {
    use axum::response::IntoResponse;
    match answer {
        Answer::Status(code) => (
            http::StatusCode::from_u16(code).unwrap(),
            [("location", "http://127.0.0.1:9/elsewhere")],
            format!("answered {code}"),
        )
            .into_response(),
        Answer::With(code, name, value) => (
            http::StatusCode::from_u16(code).unwrap(),
            [(name, value)],
            format!("answered {code}"),
        )
            .into_response(),
        Answer::Hang => std::future::pending().await,
        Answer::Endless => axum::body::Body::from_stream(futures::stream::repeat_with(|| {
            Ok::<_, Infallible>(axum::body::Bytes::from(vec![b'x'; 16 * 1024]))
        }))
        .into_response(),
    }
}

async fn spawn(
    backend: Backend,
    configure: impl FnOnce(&mut posthorn::config::Settings),
) -> Option<TestApp> {
    let app = crate::helpers::try_spawn_app_with(backend, |s| {
        s.deliver = true;
        s.webhook_targets.allow_http = true;
        s.webhook_targets.allow_private = true;
        configure(s);
    })
    .await;
    if app.is_none() {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
    }
    app
}

/// Whether account A's endpoint is active, and why it was disabled.
async fn endpoint_state(app: &TestApp, id: &str) -> (bool, String) {
    let (status, got) = rest(
        app,
        &app.account_a.key,
        Method::GET,
        &format!("/v1/webhooks/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    (
        got["webhook"]["active"].as_bool().unwrap(),
        got["webhook"]["disabled_reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Registers an endpoint for account A; its id and secret.
async fn endpoint(app: &TestApp, url: &str, events: &[&str]) -> (String, String) {
    let (status, created) = rest(
        app,
        &app.account_a.key,
        Method::POST,
        "/v1/webhooks",
        Some(json!({"url": url, "events": events})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    (
        created["webhook"]["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

fn client(app: &TestApp) -> WebhooksServiceClient<tonic::transport::Channel> {
    WebhooksServiceClient::new(app.channel.clone())
}

/// Every delivery of an endpoint, newest first.
async fn log(app: &TestApp, id: &str) -> Vec<v1::WebhookDelivery> {
    client(app)
        .list_webhook_deliveries(with_key(
            v1::ListWebhookDeliveriesRequest {
                id: id.to_owned(),
                page_size: 1000,
                ..Default::default()
            },
            KeyHeader::Bearer,
            &app.account_a.key,
        ))
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

/// Reads with `read` until `settled` holds for what it read, for at most
/// 30 seconds: the dispatcher records after the receiver answered, and
/// nothing outside the server is told when, so the log is read again.
async fn until<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    mut read: impl FnMut() -> F,
    settled: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = read().await;
        if settled(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "did not settle: {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the endpoint's log until `settled` holds for it.
async fn log_when(
    app: &TestApp,
    id: &str,
    settled: impl Fn(&[v1::WebhookDelivery]) -> bool,
) -> Vec<v1::WebhookDelivery> {
    until(|| log(app, id), |d| settled(d)).await
}

fn attempts_recorded(n: usize) -> impl Fn(&[v1::WebhookDelivery]) -> bool {
    move |d| d.len() == 1 && d[0].attempts.len() == n
}

fn header(got: &Got, name: &str) -> String {
    got.0[name].to_str().unwrap().to_owned()
}

fn body(got: &Got) -> Value {
    serde_json::from_slice(&got.1).unwrap()
}

fn state(d: &v1::WebhookDelivery) -> v1::WebhookDeliveryStatus {
    v1::WebhookDeliveryStatus::try_from(d.status).unwrap()
}

/// The account's events for its message, as the timeline has them.
async fn event_count(app: &TestApp, message: &str) -> usize {
    let (_, got) =
        crate::send::get(app, &app.account_a.key, &format!("/v1/messages/{message}")).await;
    got["message"]["events"].as_array().map_or(0, Vec::len)
}

on_both_databases_with!(
    each_event_reaches_each_subscribed_endpoint_signed_w1_w5,
    failures_retry_on_schedule_honour_retry_after_and_410_disables_w2,
    a_slow_or_hostile_endpoint_holds_up_nobody_and_its_answer_is_capped_w4,
);

async fn each_event_reaches_each_subscribed_endpoint_signed_w1_w5(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let all = Hook::start(|_| Answer::Status(204)).await;
    let bounces = Hook::start(|_| Answer::Status(204)).await;
    let paused = Hook::start(|_| Answer::Status(204)).await;
    let theirs = Hook::start(|_| Answer::Status(204)).await;
    let (all_id, secret) = endpoint(&app, &all.url, &[]).await;
    let (bounces_id, _) = endpoint(&app, &bounces.url, &["email.bounced"]).await;
    let (paused_id, _) = endpoint(&app, &paused.url, &[]).await;
    let (status, _) = rest(
        &app,
        &app.account_a.key,
        Method::PATCH,
        &format!("/v1/webhooks/{paused_id}"),
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = rest(
        &app,
        &app.account_b.key,
        Method::POST,
        "/v1/webhooks",
        Some(json!({"url": theirs.url})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let mut request = crate::send::inline();
    request.tags = vec!["receipt".into()];
    request.metadata = [("order".to_owned(), "A-17".to_owned())].into();
    let message = crate::delivery::send(&app, &app.account_a.key, request).await;

    // queued, then delivered (capture): two requests, one per event.
    let got = all.wait_for(2).await;
    let mut types: Vec<String> = got
        .iter()
        .map(|g| body(g)["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(types, ["email.delivered", "email.queued"]);
    for request in &got {
        assert!(
            verified(&secret, &request.0, &request.1),
            "the reference verifier accepts it"
        );
        assert!(!verified(
            &crate::webhooks::other_secret(),
            &request.0,
            &request.1
        ));
        let sent = body(request);
        assert_eq!(sent["data"]["message_id"], message);
        // `queued` is the message's event; `delivered` the recipient's.
        let recipient = match sent["type"].as_str().unwrap() {
            "email.queued" => "",
            _ => "jane@example.com",
        };
        assert_eq!(sent["data"]["recipient"], recipient);
        assert_eq!(sent["data"]["tags"], json!(["receipt"]));
        assert_eq!(sent["data"]["metadata"], json!({"order": "A-17"}));
        assert_eq!(
            header(request, "webhook-id"),
            format!("evt_{}", sent["data"]["cursor"])
        );
        let timestamp: i64 = header(request, "webhook-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    }
    let delivered = got
        .iter()
        .find(|g| body(g)["type"] == "email.delivered")
        .unwrap();
    assert_eq!(body(delivered)["data"]["status"], "delivered");

    // The log: both succeeded with their attempt; one per event of the message.
    let deliveries = log_when(&app, &all_id, |d| {
        d.len() == 2
            && d.iter()
                .all(|d| state(d) == v1::WebhookDeliveryStatus::Succeeded)
    })
    .await;
    assert_eq!(deliveries.len(), event_count(&app, &message).await);
    for d in &deliveries {
        assert_eq!(d.webhook_id, all_id);
        assert_eq!(d.attempts.len(), 1);
        assert_eq!(d.attempts[0].status_code, 204);
        assert!(d.next_attempt_at.is_none());
        assert!(got.iter().any(|g| header(g, "webhook-id") == d.event_id));
    }
    // Newest first, filtered by type and status over REST too.
    assert_eq!(deliveries[0].event_type, "email.delivered");
    let (status_code, filtered) = rest(
        &app,
        &app.account_a.key,
        Method::GET,
        &format!("/v1/webhooks/{all_id}/deliveries?event_type=email.queued&status=succeeded"),
        None,
    )
    .await;
    assert_eq!(status_code, StatusCode::OK, "{filtered}");
    assert_eq!(filtered["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["deliveries"][0]["event_type"], "email.queued");
    assert_eq!(filtered["deliveries"][0]["attempts"][0]["status_code"], 204);
    let (status_code, error) = rest(
        &app,
        &app.account_a.key,
        Method::GET,
        &format!("/v1/webhooks/{all_id}/deliveries?event_type=email.nope"),
        None,
    )
    .await;
    assert_eq!(status_code, StatusCode::BAD_REQUEST);
    assert_eq!(json_reason(&error), "VALIDATION_FAILED");
    assert!(error.to_string().contains("event_type"), "{error}");

    // Paged one at a time, the pages cover the log once.
    let (_, first) = rest(
        &app,
        &app.account_a.key,
        Method::GET,
        &format!("/v1/webhooks/{all_id}/deliveries?page_size=1"),
        None,
    )
    .await;
    let token = first["next_page_token"].as_str().unwrap().to_owned();
    let (_, second) = rest(
        &app,
        &app.account_a.key,
        Method::GET,
        &format!("/v1/webhooks/{all_id}/deliveries?page_size=1&page_token={token}"),
        None,
    )
    .await;
    assert_eq!(second["deliveries"][0]["id"], json!(deliveries[1].id));
    assert!(
        second.get("next_page_token").is_none_or(|t| t == ""),
        "{second}"
    );

    // Replay: the same webhook-id, a new attempt.
    let queued = deliveries
        .iter()
        .find(|d| d.event_type == "email.queued")
        .unwrap();
    let (status_code, replayed) = rest(
        &app,
        &app.account_a.key,
        Method::POST,
        &format!("/v1/webhooks/{all_id}/deliveries/{}:retry", queued.id),
        Some(json!({})),
    )
    .await;
    assert_eq!(status_code, StatusCode::OK, "{replayed}");
    assert_eq!(replayed["delivery"]["status"], "pending");
    let again = all.wait_for(3).await;
    assert_eq!(header(&again[2], "webhook-id"), queued.event_id);
    assert_eq!(
        again[2].1,
        got.iter()
            .find(|g| header(g, "webhook-id") == queued.event_id)
            .unwrap()
            .1,
        "the same body"
    );
    log_when(&app, &all_id, |d| {
        d.iter()
            .any(|d| d.attempts.len() == 2 && state(d) == v1::WebhookDeliveryStatus::Succeeded)
    })
    .await;

    // Not subscribed, paused, or another account's: nothing was written
    // for them, and nothing arrived.
    assert!(log(&app, &bounces_id).await.is_empty());
    assert!(log(&app, &paused_id).await.is_empty());
    assert!(
        bounces.requests().is_empty()
            && paused.requests().is_empty()
            && theirs.requests().is_empty()
    );
    // B cannot read or replay A's log.
    let (status_code, _) = rest(
        &app,
        &app.account_b.key,
        Method::GET,
        &format!("/v1/webhooks/{all_id}/deliveries"),
        None,
    )
    .await;
    assert_eq!(status_code, StatusCode::NOT_FOUND);
    let (status_code, _) = rest(
        &app,
        &app.account_b.key,
        Method::POST,
        &format!("/v1/webhooks/{all_id}/deliveries/{}:retry", queued.id),
        Some(json!({})),
    )
    .await;
    assert_eq!(status_code, StatusCode::NOT_FOUND);
    // A paused endpoint's deliveries are not replayed.
    let (status_code, error) = rest(
        &app,
        &app.account_a.key,
        Method::POST,
        &format!("/v1/webhooks/{paused_id}/deliveries/{}:retry", queued.id),
        Some(json!({})),
    )
    .await;
    assert_eq!(status_code, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(json_reason(&error), "FAILED_PRECONDITION");
}

async fn failures_retry_on_schedule_honour_retry_after_and_410_disables_w2(backend: Backend) {
    // Ahead of the events' (system) time, so they are due at once.
    let clock = Arc::new(ManualClock::at(
        chrono::Utc::now() + chrono::Duration::minutes(1),
    ));
    let start = clock.clone();
    let Some(app) = spawn(backend, move |s| {
        s.webhook_clock = Some(start);
        // Longer than four failures, shorter than six.
        s.webhook_policy.disable_after = Duration::from_secs(8 * 3600);
    })
    .await
    else {
        return;
    };
    let flaky = Hook::start(|n| Answer::Status(if n < 4 { 500 } else { 200 })).await;
    let throttled = Hook::start(|n| {
        if n == 0 {
            Answer::With(429, "retry-after", "120".into())
        } else {
            Answer::Status(200)
        }
    })
    .await;
    let gone = Hook::start(|_| Answer::Status(410)).await;
    let redirecting = Hook::start(|_| Answer::Status(302)).await;
    let down = Hook::start(|_| Answer::Status(503)).await;
    let only_queued = ["email.queued"];
    let (flaky_id, _) = endpoint(&app, &flaky.url, &only_queued).await;
    let (throttled_id, _) = endpoint(&app, &throttled.url, &only_queued).await;
    let (gone_id, _) = endpoint(&app, &gone.url, &only_queued).await;
    let (redirecting_id, _) = endpoint(&app, &redirecting.url, &only_queued).await;
    let (down_id, _) = endpoint(&app, &down.url, &only_queued).await;
    crate::delivery::send(&app, &app.account_a.key, crate::send::inline()).await;

    for (id, hook) in [
        (&flaky_id, &flaky),
        (&throttled_id, &throttled),
        (&gone_id, &gone),
        (&redirecting_id, &redirecting),
        (&down_id, &down),
    ] {
        hook.wait_for(1).await;
        log_when(&app, id, attempts_recorded(1)).await;
    }
    // 429 with Retry-After: 120 waits 120 s, not 30.
    let d = &log(&app, &throttled_id).await[0];
    let waited = d.next_attempt_at.unwrap().seconds - d.attempts[0].attempted_at.unwrap().seconds;
    assert!((120..=121).contains(&waited), "{d:?}");
    // 410: abandoned, and the endpoint is off with the reason.
    let d = &log(&app, &gone_id).await[0];
    assert_eq!(state(d), v1::WebhookDeliveryStatus::Abandoned);
    let (active, reason) = endpoint_state(&app, &gone_id).await;
    assert!(!active, "{reason}");
    assert!(reason.contains("410"), "{reason}");
    // 302: a failure, recorded with its code, and not followed.
    let d = &log(&app, &redirecting_id).await[0];
    assert_eq!(state(d), v1::WebhookDeliveryStatus::Pending);
    assert_eq!(d.attempts[0].status_code, 302);

    // The schedule: 30 s, 5 min, 30 min, 2 h, 6 h after each failure, +0–10 %.
    let schedule = [30i64, 300, 1800, 7200, 21_600];
    for (failures, wait) in schedule.iter().enumerate() {
        let d = &log(&app, &down_id).await[0];
        let last = d.attempts.last().unwrap().attempted_at.unwrap().seconds;
        let next = d.next_attempt_at.as_ref().unwrap().seconds;
        assert!(
            (wait..=&(wait + wait / 10 + 1)).contains(&&(next - last)),
            "wait {failures}: {d:?}"
        );
        clock.advance(chrono::Duration::seconds(wait + wait / 10 + 2));
        down.wait_for(failures + 2).await;
        log_when(&app, &down_id, attempts_recorded(failures + 2)).await;
    }
    let d = &log(&app, &down_id).await[0];
    assert_eq!(
        state(d),
        v1::WebhookDeliveryStatus::Abandoned,
        "six failures: {d:?}"
    );
    assert!(d.next_attempt_at.is_none());
    assert!(d.attempts.iter().all(|a| a.status_code == 503));
    // Failing for longer than the window: disabled.
    let (active, reason) = endpoint_state(&app, &down_id).await;
    assert!(!active, "{reason}");
    assert!(reason.contains("no delivery succeeded"), "{reason}");

    // The flaky endpoint took its fifth attempt; same id, a fresh timestamp each time.
    let got = flaky.wait_for(5).await;
    let d = log_when(&app, &flaky_id, |d| {
        d.len() == 1 && state(&d[0]) == v1::WebhookDeliveryStatus::Succeeded
    })
    .await;
    assert_eq!(
        d[0].attempts
            .iter()
            .map(|a| a.status_code)
            .collect::<Vec<_>>(),
        [500, 500, 500, 500, 200]
    );
    let ids: std::collections::HashSet<String> =
        got.iter().map(|g| header(g, "webhook-id")).collect();
    assert_eq!(ids.len(), 1, "one webhook-id on every attempt");
    let stamps: Vec<i64> = got
        .iter()
        .map(|g| header(g, "webhook-timestamp").parse().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[1] >= w[0] + 30), "{stamps:?}");
    assert!(got.windows(2).all(|w| w[0].1 == w[1].1), "the same body");
    let (active, reason) = endpoint_state(&app, &flaky_id).await;
    assert!(active, "a success clears the failures: {reason}");
    // The throttled one succeeded on its second attempt; the gone one was never tried again.
    assert_eq!(throttled.requests().len(), 2);
    assert_eq!(gone.requests().len(), 1);
    assert_eq!(
        redirecting.requests().len(),
        6,
        "each attempt one request, never a redirect"
    );
}

async fn a_slow_or_hostile_endpoint_holds_up_nobody_and_its_answer_is_capped_w4(backend: Backend) {
    let Some(app) = spawn(backend, |s| s.webhook_endpoint_concurrency = 2).await else {
        return;
    };
    let hanging = Hook::start(|_| Answer::Hang).await;
    let endless = Hook::start(|_| Answer::Endless).await;
    let healthy = Hook::start(|_| Answer::Status(200)).await;
    let (hanging_id, _) = endpoint(&app, &hanging.url, &[]).await;
    let (endless_id, _) = endpoint(&app, &endless.url, &[]).await;
    let (healthy_id, _) = endpoint(&app, &healthy.url, &[]).await;
    // Five messages: ten events for each endpoint.
    for _ in 0..5 {
        crate::delivery::send(&app, &app.account_a.key, crate::send::inline()).await;
    }
    // The healthy endpoint gets all ten while the hanging one holds two.
    healthy.wait_for(10).await;
    log_when(&app, &healthy_id, |d| {
        d.len() == 10
            && d.iter()
                .all(|d| state(d) == v1::WebhookDeliveryStatus::Succeeded)
    })
    .await;
    assert_eq!(
        hanging.requests().len(),
        2,
        "no more than its share at once"
    );
    // An endless body is cut at 64 KB: each answer recorded as a success
    // with its first 1 KB.
    let d = log_when(&app, &endless_id, |d| {
        d.len() == 10 && d.iter().all(|d| d.attempts.len() == 1)
    })
    .await;
    for d in &d {
        assert_eq!(state(d), v1::WebhookDeliveryStatus::Succeeded, "{d:?}");
        assert_eq!(d.attempts[0].response_snippet, "x".repeat(1024));
    }
    let pending = log(&app, &hanging_id).await;
    assert!(
        pending
            .iter()
            .all(|d| state(d) == v1::WebhookDeliveryStatus::Pending && d.attempts.is_empty())
    );
    // The hanging requests end at the 10 s timeout: failures to retry,
    // and the next two go out.
    let timed_out = log_when(&app, &hanging_id, |d| {
        d.iter().filter(|d| !d.attempts.is_empty()).count() >= 2
    })
    .await;
    for d in timed_out.iter().filter(|d| !d.attempts.is_empty()) {
        let attempt = &d.attempts[0];
        assert_eq!(state(d), v1::WebhookDeliveryStatus::Pending, "{d:?}");
        assert_eq!(attempt.status_code, 0);
        assert!(attempt.error.contains("timed out"), "{attempt:?}");
        let latency = attempt.latency.unwrap();
        assert!((10..12).contains(&latency.seconds), "{latency:?}");
    }
    hanging.wait_for(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_the_2xx_and_its_record_redelivers_with_the_same_webhook_id_w3_sqlite() {
    a_kill_between_the_2xx_and_its_record_redelivers(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_the_2xx_and_its_record_redelivers_with_the_same_webhook_id_w3_postgres() {
    a_kill_between_the_2xx_and_its_record_redelivers(Backend::Postgres).await;
}

/// Kills the real process after the receiver's 2xx and before the record
/// (`POSTHORN_TEST_FAILPOINT=after_webhook_2xx_before_mark`), restarts it,
/// and checks that the delivery goes again once its lease has run out,
/// with the same `webhook-id` and body, and that the outbox holds exactly
/// one delivery per event.
async fn a_kill_between_the_2xx_and_its_record_redelivers(backend: Backend) {
    use crate::binary::{serve_with, serve_with_stderr};
    let Some((_database, url)) = crate::helpers::TestDatabase::create(backend).await else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("POSTHORN_DATABASE_URL", url.as_str()),
        ("POSTHORN_WEBHOOKS_ALLOW_HTTP", "true"),
        ("POSTHORN_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("POSTHORN_WEBHOOK_LEASE_SECONDS", "11"),
        // The message itself may have been claimed when the kill came.
        ("POSTHORN_DELIVERY_LEASE_SECONDS", "2"),
    ];
    let mut first_env = env.to_vec();
    first_env.push(("POSTHORN_TEST_FAILPOINT", "after_webhook_2xx_before_mark"));
    let (mut server, mut stderr) = serve_with_stderr(dir.path(), &first_env, &[]).await;
    let key = server.key();
    let hook = Hook::start(|_| Answer::Status(200)).await;
    let counted = Hook::start(|_| Answer::Status(200)).await;
    let create = |url: String, events: Vec<String>| v1::CreateWebhookRequest {
        url,
        events,
        ..Default::default()
    };
    let mut webhooks = WebhooksServiceClient::new(server.channel().await);
    let queued_only = webhooks
        .create_webhook(with_key(
            create(hook.url.clone(), vec!["email.queued".into()]),
            KeyHeader::Bearer,
            &key,
        ))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap()
        .id;
    let every_event = webhooks
        .create_webhook(with_key(
            create(counted.url.clone(), vec![]),
            KeyHeader::Bearer,
            &key,
        ))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap()
        .id;
    let request = v1::SendEmailRequest {
        from_email: "hello@localhost".into(),
        to: vec!["jane@example.com".into()],
        subject: "Was it told?".into(),
        text: "The receiver said 200; the record never happened.".into(),
        ..Default::default()
    };
    let message =
        posthorn::proto::v1::send_service_client::SendServiceClient::new(server.channel().await)
            .send_email(with_key(request, KeyHeader::Bearer, &key))
            .await
            .expect("accepted")
            .into_inner()
            .id;
    let first = hook.wait_for(1).await;
    loop {
        let line = stderr
            .next_line()
            .await
            .unwrap()
            .expect("the failpoint is reached before stderr closes");
        if line.contains("failpoint after_webhook_2xx_before_mark") {
            break;
        }
    }
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    drop(stderr);

    let server = serve_with(dir.path(), &env, &["--no-bootstrap"]).await;
    let again = hook.wait_for(2).await;
    assert_eq!(
        header(&again[1], "webhook-id"),
        header(&first[0], "webhook-id"),
        "the receiver can tell it is the same event"
    );
    assert_eq!(again[1].1, first[0].1, "the same body");
    let log = |id: String| {
        let channel = server.channel();
        let key = key.clone();
        async move {
            WebhooksServiceClient::new(channel.await)
                .list_webhook_deliveries(with_key(
                    v1::ListWebhookDeliveriesRequest {
                        id,
                        ..Default::default()
                    },
                    KeyHeader::Bearer,
                    &key,
                ))
                .await
                .unwrap()
                .into_inner()
                .deliveries
        }
    };
    // Recorded once, succeeded; the lost attempt's answer never was.
    let settled = |d: &[v1::WebhookDelivery]| {
        !d.is_empty()
            && d.iter()
                .all(|d| state(d) == v1::WebhookDeliveryStatus::Succeeded)
    };
    let (queued, every) = until(
        || async {
            (
                log(queued_only.clone()).await,
                log(every_event.clone()).await,
            )
        },
        |(queued, every)| settled(queued) && every.len() >= 2 && settled(every),
    )
    .await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].event_id, header(&first[0], "webhook-id"));
    assert_eq!(hook.requests().len(), 2, "redelivered once");
    // One delivery per event of the message, neither more nor fewer.
    let timeline = posthorn::proto::v1::messages_service_client::MessagesServiceClient::new(
        server.channel().await,
    )
    .get_message(with_key(
        v1::GetMessageRequest {
            id: message.clone(),
        },
        KeyHeader::Bearer,
        &key,
    ))
    .await
    .unwrap()
    .into_inner()
    .message
    .unwrap()
    .events;
    let mut told: Vec<String> = every.iter().map(|d| d.event_id.clone()).collect();
    let mut happened: Vec<String> = timeline
        .iter()
        .map(|e| format!("evt_{}", e.cursor))
        .collect();
    told.sort();
    happened.sort();
    assert_eq!(told, happened);
}

on_both_databases_with!(a_delivery_to_a_name_inside_the_network_is_refused_and_logged_s2);

/// The dispatcher checks addresses as TestWebhook does: a name that
/// resolves inside the network is refused before any connection, and the
/// attempt says why.
async fn a_delivery_to_a_name_inside_the_network_is_refused_and_logged_s2(backend: Backend) {
    let receiver = Hook::start(|_| Answer::Status(200)).await;
    let port = url::Url::parse(&receiver.url).unwrap().port().unwrap();
    let Some(app) = spawn(backend, |s| {
        s.webhook_targets.allow_private = false;
        s.webhook_hosts = [(
            "hooks.rebound.example".to_owned(),
            vec!["127.0.0.1".parse().unwrap()],
        )]
        .into();
    })
    .await
    else {
        return;
    };
    let (id, _) = endpoint(
        &app,
        &format!("http://hooks.rebound.example:{port}/hook"),
        &["email.queued"],
    )
    .await;
    crate::delivery::send(&app, &app.account_a.key, crate::send::inline()).await;
    let d = log_when(&app, &id, attempts_recorded(1)).await;
    let attempt = &d[0].attempts[0];
    assert_eq!(attempt.status_code, 0);
    assert!(
        attempt.error.starts_with("refused before connecting")
            && attempt.error.contains("127.0.0.1"),
        "{attempt:?}"
    );
    assert_eq!(
        state(&d[0]),
        v1::WebhookDeliveryStatus::Pending,
        "retried later"
    );
    assert!(receiver.requests().is_empty(), "never reached");
}
