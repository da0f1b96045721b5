//! Open and click tracking through a real SMTP peer: the delivered copy of
//! a tracked message carries its own rewritten links and pixel and still
//! parses as clean MIME; loading the pixel and following a link add
//! `opened` and `clicked` to the recipient, the status and the timeline
//! (over REST, gRPC and the live stream); tokens are not an open redirect
//! (S4); the pixel is private and uncacheable (S6); bounces win over
//! engagement in the message's status.

use std::collections::HashMap;

use posthorn::proto::v1;
use reqwest::StatusCode;
use serde_json::Value;

use crate::delivery::{next_event, send, watch};
use crate::fault_smtp::{Accepted, FaultSmtp, Script};
use crate::helpers::{Backend, KeyHeader, TestApp, with_key};
use crate::send::{get, inline};

on_both_databases_with!(
    a_tracked_message_records_opens_and_clicks_and_its_links_are_no_open_redirect_s4_s6,
    a_bounce_wins_over_an_open_in_the_message_status,
    tokens_of_one_account_cannot_act_on_another_a6,
    the_recipients_own_copies_go_out_side_by_side
);

const PAGE: &str = "https://shop.example/orders/1042?ref=mail&step=2";

/// A tracked html with every kind of link the rewriter meets.
fn tracked(to: &[&str]) -> v1::SendEmailRequest {
    let mut request = inline();
    request.to = to.iter().map(|t| t.to_string()).collect();
    request.html = "<html><body><p>Your order: \
        <a href=\"https://shop.example/orders/1042?ref=mail&amp;step=2\">see it</a>.</p>\
        <p><a href=\"mailto:help@acme.example\">Write to us</a> \
        <a data-posthorn-notrack href=\"https://acme.example/privacy\">Privacy</a></p>\
        </body></html>"
        .into();
    request.text = format!("Your order: {PAGE}");
    request.track_opens = true;
    request.track_clicks = true;
    request.unsubscribe = true;
    request
}

/// A server delivering to `sink`, with a mailto form of the unsubscribe
/// link.
async fn spawn(backend: Backend, sink: &FaultSmtp) -> Option<TestApp> {
    sink.app(backend, |s| {
        s.unsubscribe_mailto = Some("unsubscribe@acme.example".into());
    })
    .await
}

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `url` (a link as delivered, whose host is the configured public URL) on
/// the test server.
fn on_server(app: &TestApp, url: &str) -> String {
    let url = url::Url::parse(url).expect("a link");
    format!("{}{}", app.base_url, url.path())
}

/// The part of type `content_type` of a delivered copy, as Python's email
/// package reads it; the copy must parse without a defect.
fn part(copy: &Accepted, content_type: &str) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &copy.data).unwrap();
    let parsed = crate::relay::parse_mime(file.path());
    assert_eq!(parsed["defects"], serde_json::json!([]), "{parsed}");
    parsed["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content_type"] == content_type)
        .unwrap_or_else(|| panic!("a {content_type} part in {parsed}"))["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every `href` and `src` value in `html`, in order.
fn links_in(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["href=\"", "src=\""] {
        for (i, _) in html.match_indices(attribute) {
            let rest = &html[i + attribute.len()..];
            found.push((i, rest[..rest.find('"').unwrap()].replace("&amp;", "&")));
        }
    }
    found.sort();
    found.into_iter().map(|(_, link)| link).collect()
}

/// The message over REST.
async fn message(app: &TestApp, id: &str) -> Value {
    let (status, body) = get(app, &app.account_a.key, &format!("/v1/messages/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["message"].clone()
}

fn recipient<'a>(message: &'a Value, email: &str) -> &'a Value {
    message["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["email"] == email)
        .unwrap_or_else(|| panic!("{email} in {message}"))
}

fn events_of<'a>(message: &'a Value, kind: &str) -> Vec<&'a Value> {
    message["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

/// Waits on `stream` for the next event of `kind` for `message_id`.
async fn next_of(
    stream: &mut tonic::Streaming<v1::WatchMessagesResponse>,
    kind: v1::EventType,
) -> v1::MessageEvent {
    loop {
        let event = next_event(stream).await;
        if event.r#type == kind as i32 {
            return event;
        }
    }
}

async fn a_tracked_message_records_opens_and_clicks_and_its_links_are_no_open_redirect_s4_s6(
    backend: Backend,
) {
    let sink = FaultSmtp::start(Script::default()).await;
    let Some(app) = spawn(backend, &sink).await else {
        return;
    };
    let key = app.account_a.key.clone();
    let mut stream = watch(&app, &key, v1::WatchMessagesRequest::default()).await;
    let id = send(
        &app,
        &key,
        tracked(&["jane@example.com", "zoe@example.com"]),
    )
    .await;
    sink.delivered(2).await;
    for _ in 0..2 {
        next_of(&mut stream, v1::EventType::Sent).await;
    }

    // Each copy: its own tracked link, its own pixel, both unsubscribe
    // headers; mailto, the marked link and the text are as written.
    let mut copies: HashMap<String, Vec<String>> = HashMap::new();
    for copy in sink.accepted() {
        let html = part(&copy, "text/html");
        let links = links_in(&html);
        assert_eq!(links.len(), 4, "{html}");
        assert!(
            links[0].contains("/t/c/"),
            "the order link is tracked: {html}"
        );
        assert_eq!(links[1], "mailto:help@acme.example");
        assert_eq!(links[2], "https://acme.example/privacy");
        assert!(
            links[3].contains("/t/o/"),
            "the pixel closes the body: {html}"
        );
        assert!(html.trim_end().ends_with("\"></body></html>"), "{html}");
        assert!(part(&copy, "text/plain").contains(PAGE));
        // Both forms of the unsubscribe link carry the same token.
        let head = String::from_utf8_lossy(&copy.data).replace("\r\n ", " ");
        let list = head
            .lines()
            .find_map(|l| l.strip_prefix("List-Unsubscribe: "))
            .expect("List-Unsubscribe");
        let (web, mail) = list.split_once(", ").expect("two forms");
        let token = web.rsplit_once("/u/").unwrap().1.trim_end_matches('>');
        assert_eq!(
            mail,
            format!("<mailto:unsubscribe@acme.example?subject=unsubscribe%20{token}>")
        );
        assert!(head.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        copies.insert(copy.to[0].clone(), links);
    }
    let (jane, zoe) = (&copies["jane@example.com"], &copies["zoe@example.com"]);
    assert_ne!(jane[0], zoe[0], "each recipient's link is its own");
    assert_ne!(jane[3], zoe[3], "each recipient's pixel is its own");
    let (click, pixel) = (on_server(&app, &jane[0]), on_server(&app, &jane[3]));
    let browser = browser();
    let user_agent = "Mozilla/5.0 (X11; Linux x86_64) Thunderbird/128.0";

    // S6: the pixel is a GIF nobody may cache, with no cookie.
    let response = browser
        .get(&pixel)
        .header("user-agent", user_agent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/gif");
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store")
    );
    assert!(response.headers().get("set-cookie").is_none());
    assert!(response.bytes().await.unwrap().starts_with(b"GIF89a"));
    let opened = next_of(&mut stream, v1::EventType::Opened).await;
    assert_eq!(opened.recipient, "jane@example.com");
    assert_eq!(opened.status, v1::MessageStatus::Opened as i32);

    let after_open = message(&app, &id).await;
    assert_eq!(after_open["status"], "opened");
    let first_opened_at = recipient(&after_open, "jane@example.com")["first_opened_at"].clone();
    assert!(first_opened_at.is_string(), "{after_open}");
    assert_eq!(
        recipient(&after_open, "jane@example.com")["status"],
        "opened"
    );
    assert_eq!(recipient(&after_open, "jane@example.com")["open_count"], 1);
    assert_eq!(recipient(&after_open, "zoe@example.com")["status"], "sent");
    let open = events_of(&after_open, "opened")[0];
    assert_eq!(open["details"]["user_agent"], user_agent);
    assert_eq!(
        open["details"]["ip"], "127.0.0.0",
        "only the network is kept"
    );

    // A second open counts; the first time stays. A privacy proxy's
    // prefetch is in the timeline but counts for nothing.
    for agent in [user_agent, "Mozilla/5.0"] {
        let response = browser
            .get(&pixel)
            .header("user-agent", agent)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // A forged or foreign token still gets the pixel, and records nothing.
    let (payload, tag) = pixel.rsplit_once('.').unwrap();
    let forged = format!("{payload}.{}", flip(tag));
    for url in [forged, format!("{}/t/o/garbage", app.base_url)] {
        let response = browser.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "image/gif");
    }
    let after_opens = message(&app, &id).await;
    let jane_now = recipient(&after_opens, "jane@example.com");
    assert_eq!(jane_now["open_count"], 2, "{after_opens}");
    assert_eq!(jane_now["first_opened_at"], first_opened_at);
    let opens = events_of(&after_opens, "opened");
    assert_eq!(opens.len(), 3, "{after_opens}");
    assert!(
        opens[2]["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("Privacy Protection")
    );

    // S4: a link scanner's HEAD is answered and not counted.
    let head = browser.head(&click).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::FOUND);
    // The click: a 302 to the page as written, recorded with its URL.
    let response = browser
        .get(format!("{click}?url=https://evil.test/"))
        .header("user-agent", user_agent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], PAGE);
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store")
    );
    assert!(response.headers().get("set-cookie").is_none());
    let clicked = next_of(&mut stream, v1::EventType::Clicked).await;
    assert_eq!(clicked.details.as_ref().unwrap().url, PAGE);
    assert_eq!(clicked.status, v1::MessageStatus::Clicked as i32);

    // S4: altered, forged and misused tokens lead nowhere.
    let token = click.rsplit_once("/t/c/").unwrap().1;
    let (payload, tag) = token.split_once('.').unwrap();
    let decoded = String::from_utf8(base64_url(payload)).unwrap();
    let elsewhere = decoded.replace(PAGE, "https://evil.test/");
    let other_recipient = decoded.replace("jane@example.com", "zoe@example.com");
    let pixel_token = pixel.rsplit_once("/t/o/").unwrap().1;
    for bad in [
        format!("{payload}.{}", flip(tag)),
        format!("{}.{tag}", base64_encode(&elsewhere)),
        format!("{}.{tag}", base64_encode(&other_recipient)),
        format!("{payload}.{}", &tag[..tag.len() - 2]),
        payload.to_owned(),
        pixel_token.to_owned(),
        "garbage".to_owned(),
    ] {
        let response = browser
            .get(format!("{}/t/c/{bad}", app.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{bad}");
        assert!(response.headers().get("location").is_none(), "{bad}");
    }

    // The message over gRPC: jane clicked once, zoe did nothing.
    let over_grpc = crate::delivery::messages(&app)
        .get_message(with_key(
            v1::GetMessageRequest { id: id.clone() },
            KeyHeader::Bearer,
            &key,
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(over_grpc.status, v1::MessageStatus::Clicked as i32);
    let by_email: HashMap<&str, &v1::Recipient> = over_grpc
        .recipients
        .iter()
        .map(|r| (r.email.as_str(), r))
        .collect();
    let jane = by_email["jane@example.com"];
    assert_eq!(jane.status, v1::MessageStatus::Clicked as i32);
    assert_eq!((jane.open_count, jane.click_count), (2, 1));
    assert!(jane.first_clicked_at.is_some() && jane.first_opened_at.is_some());
    let zoe = by_email["zoe@example.com"];
    assert_eq!((zoe.open_count, zoe.click_count), (0, 0));
    assert!(zoe.first_opened_at.is_none());
    let clicks: Vec<&v1::MessageEvent> = over_grpc
        .events
        .iter()
        .filter(|e| e.r#type == v1::EventType::Clicked as i32)
        .collect();
    assert_eq!(clicks.len(), 1, "only the GET click: {clicks:?}");
    assert_eq!(clicks[0].details.as_ref().unwrap().user_agent, user_agent);

    // An open after a click leaves the recipient at clicked.
    browser.get(&pixel).send().await.unwrap();
    let last = message(&app, &id).await;
    assert_eq!(recipient(&last, "jane@example.com")["status"], "clicked");
    assert_eq!(recipient(&last, "jane@example.com")["open_count"], 3);

    // A message that asked for no tracking has no pixel and no rewriting.
    let mut plain = tracked(&["uma@example.com"]);
    plain.track_opens = false;
    plain.track_clicks = false;
    plain.unsubscribe = false;
    send(&app, &key, plain).await;
    sink.delivered(3).await;
    let html = part(&sink.accepted()[2], "text/html");
    assert!(!html.contains("/t/"), "{html}");
    assert!(html.contains("href=\"https://shop.example/orders/1042?ref=mail&amp;step=2\""));
}

async fn a_bounce_wins_over_an_open_in_the_message_status(backend: Backend) {
    let sink = FaultSmtp::start(Script::default()).await;
    let Some(app) = spawn(backend, &sink).await else {
        return;
    };
    let key = app.account_a.key.clone();
    let mut stream = watch(&app, &key, v1::WatchMessagesRequest::default()).await;
    let id = send(
        &app,
        &key,
        tracked(&["nouser@example.com", "jane@example.com"]),
    )
    .await;
    let mut outcomes = Vec::new();
    while outcomes.len() < 2 {
        let event = next_event(&mut stream).await;
        if [v1::EventType::Bounced, v1::EventType::Sent]
            .map(|t| t as i32)
            .contains(&event.r#type)
        {
            outcomes.push(event.r#type);
        }
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        [v1::EventType::Sent as i32, v1::EventType::Bounced as i32]
    );
    let copy = sink.accepted()[0].clone();
    assert_eq!(copy.to, ["jane@example.com"]);
    let pixel = links_in(&part(&copy, "text/html"))
        .into_iter()
        .find(|l| l.contains("/t/o/"))
        .unwrap();
    let click = links_in(&part(&copy, "text/html"))[0].clone();
    browser().get(on_server(&app, &pixel)).send().await.unwrap();
    browser().get(on_server(&app, &click)).send().await.unwrap();
    let clicked = next_of(&mut stream, v1::EventType::Clicked).await;
    assert_eq!(clicked.status, v1::MessageStatus::Bounced as i32);
    let message = message(&app, &id).await;
    assert_eq!(message["status"], "bounced", "{message}");
    assert_eq!(recipient(&message, "jane@example.com")["status"], "clicked");
    assert_eq!(
        recipient(&message, "nouser@example.com")["status"],
        "bounced"
    );
}

async fn tokens_of_one_account_cannot_act_on_another_a6(backend: Backend) {
    let sink = FaultSmtp::start(Script::default()).await;
    let Some(app) = spawn(backend, &sink).await else {
        return;
    };
    // Both accounts mail jane, tracked and with an unsubscribe link.
    let of_a = send(&app, &app.account_a.key, tracked(&["jane@example.com"])).await;
    let mut request = tracked(&["jane@example.com"]);
    request.from_email = "hello@globex.example".into();
    let of_b = send(&app, &app.account_b.key, request).await;
    sink.delivered(2).await;
    let copy_of_a = sink
        .accepted()
        .into_iter()
        .find(|c| String::from_utf8_lossy(&c.data).contains("hello@acme.example"))
        .unwrap();
    let links = links_in(&part(&copy_of_a, "text/html"));
    let head = String::from_utf8_lossy(&copy_of_a.data).replace("\r\n ", " ");
    let unsubscribe = head
        .lines()
        .find_map(|l| l.strip_prefix("List-Unsubscribe: <"))
        .and_then(|l| l.split_once('>'))
        .unwrap()
        .0
        .to_owned();

    // A's tokens with B's message put in: refused, nothing recorded for B.
    let browser = browser();
    for (link, expected) in [
        (&links[0], StatusCode::NOT_FOUND),
        (&links[3], StatusCode::OK),
        (&unsubscribe, StatusCode::NOT_FOUND),
    ] {
        let (path, token) = link.rsplit_once('/').unwrap();
        let (payload, tag) = token.split_once('.').unwrap();
        let payload = String::from_utf8(base64_url(payload)).unwrap();
        let swapped = format!("{}.{tag}", base64_encode(&payload.replace(&of_a, &of_b)));
        let url = on_server(&app, &format!("{path}/{swapped}"));
        let response = if link.contains("/u/") {
            browser
                .post(&url)
                .body("List-Unsubscribe=One-Click")
                .send()
                .await
        } else {
            browser.get(&url).send().await
        }
        .unwrap();
        assert_eq!(response.status(), expected, "{link}");
        assert!(response.headers().get("location").is_none());
    }
    // A's genuine tokens act on A's message only.
    browser
        .get(on_server(&app, &links[3]))
        .send()
        .await
        .unwrap();
    browser
        .get(on_server(&app, &links[0]))
        .send()
        .await
        .unwrap();
    let response = browser
        .post(on_server(&app, &unsubscribe))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let a = message(&app, &of_a).await;
    assert_eq!(a["status"], "clicked");
    let (status, b) = get(&app, &app.account_b.key, &format!("/v1/messages/{of_b}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b["message"]["status"], "sent", "{b}");
    for kind in ["opened", "clicked", "unsubscribed"] {
        assert_eq!(events_of(&a, kind).len(), 1, "{kind} on A: {a}");
        assert!(
            events_of(&b["message"], kind).is_empty(),
            "{kind} on B: {b}"
        );
    }
    let (status, _) = get(
        &app,
        &app.account_b.key,
        "/v1/suppressions/jane%40example.com",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "B's list is untouched");
}

async fn the_recipients_own_copies_go_out_side_by_side(backend: Backend) {
    // The relay takes 300 ms over each final dot: sent one after the
    // other, the copies would share one connection.
    let sink = FaultSmtp::start(Script {
        data_delay: std::time::Duration::from_millis(300),
        ..Script::default()
    })
    .await;
    let Some(app) = spawn(backend, &sink).await else {
        return;
    };
    let to = [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ];
    send(&app, &app.account_a.key, tracked(&to)).await;
    sink.delivered(4).await;
    assert_eq!(sink.connections(), 4, "one connection per copy in flight");
    let mut envelopes: Vec<Vec<String>> = sink.accepted().into_iter().map(|a| a.to).collect();
    envelopes.sort();
    assert_eq!(envelopes, to.map(|t| vec![t.to_owned()]));
}

/// `tag` with its first character changed.
fn flip(tag: &str) -> String {
    let first = if tag.starts_with('A') { 'B' } else { 'A' };
    format!("{first}{}", &tag[1..])
}

fn base64_url(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
