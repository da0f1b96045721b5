//! Complaints: a mailbox provider's feedback report (ARF) about a delivered
//! message, handed to `ReportFeedback` over REST and gRPC, marks its
//! recipient and the message `complained`, adds the `complained` event and
//! suppresses the address, so the next send to it is recorded
//! `suppressed`. Another account's message is NOT_FOUND and a report that
//! is not a complaint is refused naming the rule.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use posthorn::proto::v1;
use posthorn::proto::v1::messages_service_client::MessagesServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::delivery::{next_event, send, watch};
use crate::fault_smtp::{FaultSmtp, Script};
use crate::helpers::{Backend, KeyHeader, json_reason, reason, with_key};
use crate::send::{get, inline, post};

on_both_databases_with!(a_complaint_report_marks_the_recipient_and_suppresses_the_address);

/// A feedback report as a provider's loop sends it, with the delivered
/// copy attached as `message/rfc822`.
fn arf(feedback_type: &str, recipient: &str, original: &[u8]) -> Vec<u8> {
    let mut report = format!(
        "From: fbl@provider.example\r\n\
         To: abuse@acme.example\r\n\
         Subject: Abuse report\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"arf\"\r\n\
         \r\n\
         --arf\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         A recipient marked this message as spam.\r\n\
         --arf\r\n\
         Content-Type: message/feedback-report\r\n\
         \r\n\
         Feedback-Type: {feedback_type}\r\n\
         User-Agent: ProviderFBL/2.1\r\n\
         Version: 1\r\n\
         Original-Rcpt-To: <{recipient}>\r\n\
         Reporting-MTA: dns; mx.provider.example\r\n\
         \r\n\
         --arf\r\n\
         Content-Type: message/rfc822\r\n\
         \r\n"
    )
    .into_bytes();
    report.extend_from_slice(original);
    report.extend_from_slice(b"\r\n--arf--\r\n");
    report
}

fn body(report: &[u8]) -> Value {
    json!({ "report": STANDARD.encode(report) })
}

async fn a_complaint_report_marks_the_recipient_and_suppresses_the_address(backend: Backend) {
    let sink = FaultSmtp::start(Script::default()).await;
    let Some(app) = sink.app(backend, |_| {}).await else {
        return;
    };
    let key = app.account_a.key.clone();
    let mut stream = watch(&app, &key, v1::WatchMessagesRequest::default()).await;
    let mut request = inline();
    request.to = vec!["jane@example.com".into(), "zoe@example.com".into()];
    let id = send(&app, &key, request).await;
    let mut sent = 0;
    while sent < 2 {
        if next_event(&mut stream).await.r#type == v1::EventType::Sent as i32 {
            sent += 1;
        }
    }
    let original = sink.accepted()[0].data.clone();

    // The report over REST.
    let report = arf("abuse", "Jane@example.com", &original);
    let path = "/v1/messages:reportFeedback";
    let (status, _, applied) = post(&app, &key, path, &body(&report), &[]).await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(
        applied,
        json!({"message_id": id, "recipient": "jane@example.com",
               "feedback_type": "abuse", "recorded": true})
    );
    let complained = next_event(&mut stream).await;
    assert_eq!(complained.r#type, v1::EventType::Complained as i32);
    assert_eq!(complained.recipient, "jane@example.com");
    assert_eq!(complained.status, v1::MessageStatus::Complained as i32);
    assert!(
        complained
            .details
            .unwrap()
            .reason
            .contains("ProviderFBL/2.1")
    );

    let (_, message) = get(&app, &key, &format!("/v1/messages/{id}")).await;
    let message = &message["message"];
    assert_eq!(message["status"], "complained", "{message}");
    let states: Vec<(&str, &str)> = message["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["email"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert!(
        states.contains(&("jane@example.com", "complained")),
        "{states:?}"
    );
    assert!(states.contains(&("zoe@example.com", "sent")), "{states:?}");
    let (status, suppression) = get(&app, &key, "/v1/suppressions/jane%40example.com").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(suppression["suppression"]["reason"], "complained");
    assert_eq!(suppression["suppression"]["origin"], "complaint");
    assert_eq!(suppression["suppression"]["message_id"], id);

    // The same report again, over gRPC: nothing changes.
    let mut grpc = MessagesServiceClient::new(app.channel.clone());
    let again = grpc
        .report_feedback(with_key(
            v1::ReportFeedbackRequest {
                report: report.clone(),
            },
            KeyHeader::Bearer,
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.recorded);
    let (_, message) = get(&app, &key, &format!("/v1/messages/{id}")).await;
    let complaints = message["message"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "complained")
        .count();
    assert_eq!(complaints, 1);

    // Jane is not sent to again.
    let mut next = inline();
    next.to = vec!["jane@example.com".into()];
    let answer = crate::send::client(&app)
        .send_email(with_key(next, KeyHeader::Bearer, &key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, v1::MessageStatus::Suppressed as i32);

    // Another account's report about A's message: as if it did not exist.
    let status = grpc
        .report_feedback(with_key(
            v1::ReportFeedbackRequest {
                report: arf("abuse", "zoe@example.com", &original),
            },
            KeyHeader::Bearer,
            &app.account_b.key,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (tonic::Code::NotFound, "NOT_FOUND")
    );
    let (status, _) = get(&app, &key, "/v1/suppressions/zoe%40example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "zoe is untouched");

    // What is not a complaint about our mail is refused, naming the rule.
    for (report, rule) in [
        (
            arf("not-spam", "zoe@example.com", &original),
            "not a complaint",
        ),
        (
            arf(
                "abuse",
                "zoe@example.com",
                b"Message-ID: <elsewhere@x>\r\n\r\nhi\r\n",
            ),
            "Message-ID",
        ),
        (b"hello".to_vec(), "feedback report"),
    ] {
        let (status, _, error) = post(&app, &key, path, &body(&report), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert_eq!(json_reason(&error), "VALIDATION_FAILED", "{error}");
        let violation = &error["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["@type"].as_str().unwrap().ends_with("BadRequest"))
            .unwrap()["field_violations"][0];
        assert_eq!(violation["field"], "report");
        assert!(
            violation["description"].as_str().unwrap().contains(rule),
            "{violation}"
        );
    }
}
