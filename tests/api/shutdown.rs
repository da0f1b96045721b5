//! Graceful shutdown: stop accepting, finish what is in flight, close the
//! database.

use posthorn::proto::v1::SendEmailRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::grpc_web;
use crate::helpers::spawn_app;

/// Reads from `stream` until `needle` has arrived; returns everything read.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "connection closed before {needle:?}; got {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn shutdown_finishes_a_request_in_flight_then_refuses_new_connections() {
    let mut app = spawn_app().await;
    let body = grpc_web::frame(&SendEmailRequest {
        from_email: "hello@acme.example".into(),
        ..Default::default()
    });
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /posthorn.v1.SendService/SendEmail HTTP/1.1\r\nhost: {}\r\ncontent-type: application/grpc-web+proto\r\n\
         x-grpc-web: 1\r\nx-api-key: {}\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        app.addr,
        app.account_a.key,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server asks for the body once the handler reads it: the request is in flight.
    read_until(&mut stream, "100 Continue\r\n\r\n").await;

    app.begin_shutdown();
    stream.write_all(&body).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("grpc-status: 3"),
        "the in-flight call got its answer: {response}"
    );

    app.wait_stopped().await.expect("the server stops cleanly");
    assert!(
        TcpStream::connect(app.addr).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn an_idle_server_stops_at_once_and_closes_the_database() {
    let app = spawn_app().await;
    let store = app.store.clone();
    app.stop().await.expect("clean stop");
    assert!(store.ping().await.is_err(), "the database is closed");
}

/// The status a gRPC stream ends with once shutdown began, awaited
/// (bounded: a stream that held the shutdown fails the test), checked to be
/// UNAVAILABLE with reason SHUTTING_DOWN and RetryInfo of a second.
async fn ended_by_shutdown<T: std::fmt::Debug>(stream: &mut tonic::Streaming<T>) -> tonic::Status {
    use futures::StreamExt;
    use tonic_types::StatusExt;

    let status = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .expect("the stream ends at once")
        .expect("with a status")
        .expect_err("an error status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(crate::helpers::reason(&status), "SHUTTING_DOWN");
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert_eq!(retry.retry_delay, Some(std::time::Duration::from_secs(1)));
    status
}

/// Waits for the server to stop, well within the tests' grace period of
/// 10 s: nothing held the shutdown.
async fn stops_at_once(app: &mut crate::helpers::TestApp) {
    tokio::time::timeout(std::time::Duration::from_secs(5), app.wait_stopped())
        .await
        .expect("stopped well within the grace period")
        .expect("the server stops cleanly");
}

/// A watch never ends by itself: at shutdown each open one ends at once,
/// told to resume, instead of holding the shutdown for its grace period
/// and then being cut off without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_watch_streams_at_once_telling_them_to_resume() {
    use std::time::Duration;

    let mut app = spawn_app().await;
    let key = app.account_a.key.clone();
    let mut grpc = crate::delivery::watch(
        &app,
        &key,
        posthorn::proto::v1::WatchMessagesRequest::default(),
    )
    .await;
    let sse = app
        .http
        .get(format!("{}/v1/messages:watch", app.base_url))
        .header("x-api-key", &key)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), reqwest::StatusCode::OK);

    app.begin_shutdown();
    // gRPC: UNAVAILABLE, SHUTTING_DOWN, try again in a second.
    let status = ended_by_shutdown(&mut grpc).await;
    assert!(status.message().contains("after_cursor"), "{status:?}");
    // Server-Sent Events: an error event, and the end of the stream.
    let text = tokio::time::timeout(Duration::from_secs(5), sse.text())
        .await
        .expect("the stream ends at once")
        .unwrap();
    assert!(
        text.starts_with("event: error\ndata: {\"code\":14") && text.contains("SHUTTING_DOWN"),
        "{text:?}"
    );
    stops_at_once(&mut app).await;
}

/// A SendStream a client keeps open does not hold a shutdown either: what
/// it sent before is answered, then the stream ends, telling it to send the
/// rest again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_an_open_send_stream_after_answering_what_it_read() {
    use std::time::Duration;

    use futures::StreamExt;
    use posthorn::proto::v1::SendStreamRequest;
    use posthorn::proto::v1::send_service_client::SendServiceClient;

    use crate::helpers::{KeyHeader, with_key};

    let mut app = spawn_app().await;
    let (requests, queue) = tokio::sync::mpsc::channel(8);
    let mut responses = SendServiceClient::new(app.channel.clone())
        .send_stream(with_key(
            tokio_stream::wrappers::ReceiverStream::new(queue),
            KeyHeader::Bearer,
            &app.account_a.key,
        ))
        .await
        .expect("the stream opens")
        .into_inner();
    requests
        .send(SendStreamRequest {
            correlation_id: "first".into(),
            message: Some(crate::send::inline()),
        })
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(20), responses.next())
        .await
        .expect("an answer")
        .expect("the stream is open")
        .expect("no error");
    assert_eq!(first.correlation_id, "first");
    assert!(first.error.is_none() && !first.id.is_empty(), "{first:?}");

    app.begin_shutdown();
    let status = ended_by_shutdown(&mut responses).await;
    assert!(status.message().contains("send them again"), "{status:?}");
    stops_at_once(&mut app).await;
    drop(requests);
}
