//! The one-click unsubscribe link (RFC 8058) through a real SMTP peer: each
//! recipient's own copy carries its own signed link; a GET only shows a
//! page, a POST without any key or cookie unsubscribes (suppression with
//! origin `unsubscribe_link`, the contact marked, an `unsubscribed` event),
//! repeating it changes nothing, and an altered token changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::delivery::send;
use crate::fault_smtp::{FaultSmtp, Script};
use crate::helpers::{Backend, TestApp};
use crate::send::{get, inline, post};

on_both_databases_with!(a_one_click_post_unsubscribes_and_a_get_or_a_forged_link_never_does);

crate::on_both_databases! {
    configure = |s| {
        s.deliver = true;
        s.public_listen = Some("127.0.0.1:0".parse().unwrap());
    };

    async fn the_public_listener_serves_the_links_and_nothing_else(app: TestApp) {
        let public = app.public_url.clone().expect("a public listener");
        let key = app.account_a.key.clone();
        let mut request = inline();
        request.to = vec!["quinn@example.com".into()];
        request.unsubscribe = true;
        let id = send(&app, &key, request).await;
        let mut stream = crate::delivery::watch(&app, &key, posthorn::proto::v1::WatchMessagesRequest { message_id: id.clone(), ..Default::default() }).await;
        while crate::delivery::next_event(&mut stream).await.r#type != posthorn::proto::v1::EventType::Delivered as i32 {}
        let raw = crate::delivery::messages(&app)
            .get_message_content(crate::helpers::with_key(posthorn::proto::v1::GetMessageContentRequest { id: id.clone() }, crate::helpers::KeyHeader::Bearer, &key))
            .await
            .unwrap()
            .into_inner()
            .raw;
        let link = unsubscribe_url(&raw).expect("a List-Unsubscribe link");
        let token = link.rsplit_once("/u/").unwrap().1;

        // The API is not there: no gRPC, no REST, no health.
        for path in ["/v1/messages", "/v1/suppressions", "/healthz", "/openapi.json"] {
            let response = app.http.get(format!("{public}{path}")).header("x-api-key", &key).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
        // The link is.
        let response = one_click(&app.http, &format!("{public}/u/{token}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let (status, suppression) = get(&app, &key, "/v1/suppressions/quinn%40example.com").await;
        assert_eq!(status, StatusCode::OK, "{suppression}");
        assert_eq!(suppression["suppression"]["origin"], "unsubscribe_link");
    }
}

/// The `List-Unsubscribe` URL of a delivered copy (headers unfolded).
fn unsubscribe_url(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data).replace("\r\n ", " ");
    let header = text
        .lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.strip_prefix("List-Unsubscribe: "))?;
    let url = header.trim().strip_prefix('<')?.strip_suffix('>')?;
    Some(url.to_owned())
}

fn has_one_click_header(data: &[u8]) -> bool {
    String::from_utf8_lossy(data)
        .lines()
        .take_while(|line| !line.is_empty())
        .any(|line| line == "List-Unsubscribe-Post: List-Unsubscribe=One-Click")
}

/// `/u/{token}` of `url` on the test server (the configured public URL
/// names port 0).
fn on_server(app: &TestApp, url: &str) -> String {
    let token = url.rsplit_once("/u/").expect("an unsubscribe path").1;
    format!("{}/u/{token}", app.base_url)
}

async fn a_one_click_post_unsubscribes_and_a_get_or_a_forged_link_never_does(backend: Backend) {
    let sink = FaultSmtp::start(Script::default()).await;
    let Some(app) = sink.app(backend, |_| {}).await else {
        return;
    };
    let key = app.account_a.key.clone();
    let (status, _, _) = post(
        &app,
        &key,
        "/v1/contacts",
        &json!({"email": "jane@example.com"}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let mut request = inline();
    request.to = vec!["jane@example.com".into(), "zoe@example.com".into()];
    request.unsubscribe = true;
    let id = send(&app, &key, request).await;
    sink.delivered(2).await;
    let accepted = sink.accepted();
    // One envelope per recipient, each copy with its own link.
    let mut copies: Vec<(String, String)> = accepted
        .iter()
        .map(|m| {
            assert_eq!(m.to.len(), 1, "one recipient per envelope: {:?}", m.to);
            assert!(
                has_one_click_header(&m.data),
                "List-Unsubscribe-Post is written"
            );
            (
                m.to[0].clone(),
                unsubscribe_url(&m.data).expect("a List-Unsubscribe link"),
            )
        })
        .collect();
    copies.sort();
    assert_eq!(
        copies.iter().map(|(to, _)| to.as_str()).collect::<Vec<_>>(),
        ["jane@example.com", "zoe@example.com"]
    );
    assert_ne!(
        copies[0].1, copies[1].1,
        "each recipient has a link of its own"
    );
    let jane = on_server(&app, &copies[0].1);

    // A GET (a mail scanner, a preview) shows the page and changes nothing.
    let page = app.http.get(&jane).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("jane@example.com") && html.contains("method=\"post\""),
        "{html}"
    );
    let (status, _) = get(&app, &key, "/v1/suppressions/jane%40example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a GET never unsubscribes");

    // An altered token: refused, nothing changes.
    let (path, tag) = jane.rsplit_once('.').unwrap();
    let flipped = format!(
        "{path}.{}{}",
        if tag.starts_with('A') { "B" } else { "A" },
        &tag[1..]
    );
    for response in [
        app.http.get(&flipped).send().await.unwrap(),
        one_click(&app.http, &flipped).await,
    ] {
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let (status, _) = get(&app, &key, "/v1/suppressions/jane%40example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The one-click POST, with no key and no cookie.
    let response = one_click(&app.http, &jane).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("You are unsubscribed")
    );
    assert_eq!(
        crate::suppressions::suppression_of(&app, "jane%40example.com").await,
        ("unsubscribed".into(), "unsubscribe_link".into(), id.clone())
    );
    let (_, contact) = get(&app, &key, "/v1/contacts/jane%40example.com").await;
    assert_eq!(contact["contact"]["subscribed"], false, "{contact}");
    let (status, _) = get(&app, &key, "/v1/suppressions/zoe%40example.com").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the other recipient is untouched"
    );

    // Again: still 200, and no second event.
    assert_eq!(one_click(&app.http, &jane).await.status(), StatusCode::OK);
    let (_, message) = get(&app, &key, &format!("/v1/messages/{id}")).await;
    let unsubscribed: Vec<&Value> = message["message"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "unsubscribed")
        .collect();
    assert_eq!(unsubscribed.len(), 1, "{message}");
    assert_eq!(unsubscribed[0]["recipient"], "jane@example.com");

    // Another account cannot see or undo it; its own mail to jane goes.
    let (status, _) = get(
        &app,
        &app.account_b.key,
        "/v1/suppressions/jane%40example.com",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A template that places `{{ unsubscribe_url }}` gets the recipient's
    // own link there, and the headers, without asking.
    let (status, _, created) = post(
        &app,
        &key,
        "/v1/templates",
        &json!({
            "slug": "digest",
            "name": "Digest",
            "subject": "Your digest",
            "html": "<p>News.</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
            "text": "News.\nUnsubscribe: {{ unsubscribe_url }}",
            "publish": true,
        }),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let (status, _, answer) = post(
        &app,
        &key,
        "/v1/send",
        &json!({
            "from_email": "hello@acme.example", "to": ["uma@example.com"], "template": "digest",
        }),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    sink.delivered(3).await;
    let copy = &sink.accepted()[2];
    let link = unsubscribe_url(&copy.data).expect("the headers come with a placed link");
    let body = quoted_printable_text(&copy.data);
    assert!(
        body.contains(&format!("<a href=\"{link}\">")),
        "the html has the link: {body}"
    );
    assert!(
        body.contains(&format!("Unsubscribe: {link}")),
        "the text has the link: {body}"
    );
    assert!(
        !body.contains("posthorn-unsubscribe-url"),
        "no mark is left: {body}"
    );

    // A message that did not ask for the link has none.
    let mut plain = inline();
    plain.to = vec!["zoe@example.com".into()];
    let plain = send(&app, &key, plain).await;
    sink.delivered(4).await;
    let accepted = sink.accepted();
    assert!(
        unsubscribe_url(&accepted[3].data).is_none(),
        "{plain}: no List-Unsubscribe unless asked for"
    );
}

/// On PostgreSQL a click that comes while a delivery of the same message
/// is being recorded waits its turn, then unsubscribes. The recorder here is
/// a second connection doing what a recorder does: it holds the event-order
/// lock, then writes the message's row (its aggregate). A click that took
/// the message's row before that lock deadlocked with it and answered 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_while_its_message_is_being_recorded_waits_its_turn_on_postgres() {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};

    let sink = FaultSmtp::start(Script::default()).await;
    let Some(app) = sink.app(Backend::Postgres, |_| {}).await else {
        return;
    };
    let key = app.account_a.key.clone();
    let mut request = inline();
    request.to = vec!["jane@example.com".into()];
    request.unsubscribe = true;
    let id = send(&app, &key, request).await;
    let mut stream = crate::delivery::watch(
        &app,
        &key,
        posthorn::proto::v1::WatchMessagesRequest {
            message_id: id.clone(),
            ..Default::default()
        },
    )
    .await;
    // Sent, and its record committed: no recorder of Posthorn's is left.
    while crate::delivery::next_event(&mut stream).await.r#type
        != posthorn::proto::v1::EventType::Sent as i32
    {}
    let accepted = sink.accepted();
    let link = on_server(
        &app,
        &unsubscribe_url(&accepted[0].data).expect("a List-Unsubscribe link"),
    );

    let db = sea_orm::Database::connect(&app.database_url).await.unwrap();
    let recorder = db.begin().await.unwrap();
    posthorn::storage::lock_event_order(&recorder)
        .await
        .unwrap();
    let click = tokio::spawn({
        let http = app.http.clone();
        async move { one_click(&http, &link).await }
    });
    // Until the click waits for the lock, in this test's database.
    let waiting = Statement::from_string(
        DatabaseBackend::Postgres,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut poll = tokio::time::interval(std::time::Duration::from_millis(20));
    loop {
        poll.tick().await;
        let row = db.query_one_raw(waiting.clone()).await.unwrap().unwrap();
        if row.try_get_by_index::<i64>(0).unwrap() > 0 {
            break;
        }
        assert!(!click.is_finished(), "the click did not wait for the lock");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the click never came to the lock"
        );
    }
    recorder
        .execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "UPDATE messages SET updated_at = updated_at WHERE id = $1",
            [id.clone().into()],
        ))
        .await
        .expect("the recorder writes the message's row");
    recorder.commit().await.unwrap();

    let response = click.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        crate::suppressions::suppression_of(&app, "jane%40example.com").await,
        ("unsubscribed".into(), "unsubscribe_link".into(), id)
    );
}

/// A message's text with quoted-printable soft line breaks and `=3D`
/// undone: enough to read a link in a part.
fn quoted_printable_text(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .replace("=\r\n", "")
        .replace("=3D", "=")
        .replace("\r\n", "\n")
}

/// An RFC 8058 one-click POST: the form body, nothing else.
async fn one_click(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap()
}
