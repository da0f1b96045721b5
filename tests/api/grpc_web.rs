//! A gRPC-Web client as a browser speaks it: HTTP/1.1 POSTs of
//! length-prefixed frames, the status in headers or in a trailer frame.

use prost::Message;

/// What a gRPC-Web call returned.
#[derive(Debug)]
pub struct GrpcWebReply {
    pub http_status: u16,
    pub grpc_status: i32,
    pub grpc_message: String,
    pub status_details: Option<tonic::Status>,
    /// Response messages, undecoded.
    #[allow(dead_code)]
    pub messages: Vec<Vec<u8>>,
    pub cors_allow_origin: Option<String>,
}

impl GrpcWebReply {
    /// Returns the `ErrorInfo.reason` carried in `grpc-status-details-bin`.
    pub fn reason(&self) -> String {
        self.status_details
            .as_ref()
            .map(super::helpers::reason)
            .unwrap_or_default()
    }
}

/// Encodes one message as a gRPC data frame.
pub fn frame(message: &impl Message) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Calls `path` ("/posthorn.v1.SendService/SendEmail") with one request message.
pub async fn call(
    client: &reqwest::Client,
    base_url: &str,
    path: &str,
    message: &impl Message,
    headers: &[(&str, String)],
) -> GrpcWebReply {
    let mut request = client
        .post(format!("{base_url}{path}"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "http://app.example")
        .body(frame(message));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("gRPC-Web request");
    let http_status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cors_allow_origin = header("access-control-allow-origin");
    let mut trailers: Vec<(String, String)> =
        ["grpc-status", "grpc-message", "grpc-status-details-bin"]
            .iter()
            .filter_map(|n| header(n).map(|v| (n.to_string(), v)))
            .collect();
    let body = response.bytes().await.expect("gRPC-Web body").to_vec();
    let mut messages = Vec::new();
    let mut rest = body.as_slice();
    while rest.len() >= 5 {
        let flags = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = &rest[5..5 + len];
        if flags & 0x80 != 0 {
            for line in String::from_utf8_lossy(payload)
                .split("\r\n")
                .filter(|l| !l.is_empty())
            {
                if let Some((k, v)) = line.split_once(':') {
                    trailers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
        } else {
            messages.push(payload.to_vec());
        }
        rest = &rest[5 + len..];
    }
    let get = |name: &str| {
        trailers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let grpc_status = get("grpc-status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    let grpc_message = get("grpc-message")
        .map(|m| percent_decode(&m))
        .unwrap_or_default();
    let status_details = get("grpc-status-details-bin").map(|b64| {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64.trim_end_matches('='))
            .expect("base64 status details");
        tonic::Status::with_details(
            tonic::Code::from(grpc_status),
            grpc_message.clone(),
            bytes.into(),
        )
    });
    GrpcWebReply {
        http_status,
        grpc_status,
        grpc_message,
        status_details,
        messages,
        cors_allow_origin,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
