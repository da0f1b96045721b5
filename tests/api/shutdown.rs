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
