//! The SendService handlers: parse the request into a send, call the accept
//! use case, convert the receipt. SendStream answers each request as it
//! commits, with the client's correlation id.

use std::sync::Arc;

use futures::stream::{BoxStream, StreamExt};
use prost::Message as _;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{read_timestamp, status_to_proto, struct_to_json, timestamp};
use super::{caller, status::to_status};
use crate::domain::Error;
use crate::domain::send::accept::{Answer, Flags, Receipt, SendRequest, Sender};
use crate::domain::send::validate::{AttachmentInput, SendInput};
use crate::proto::google::rpc::Status as RpcStatus;
use crate::proto::v1::send_service_server::SendService;
use crate::proto::v1::{
    SendBatchRequest, SendBatchResponse, SendBatchResult, SendEmailRequest, SendEmailResponse,
    SendStreamRequest, SendStreamResponse,
};
use crate::storage::Store;

/// Requests of one SendStream being accepted at once; more wait in the
/// stream (HTTP/2 flow control pushes back on the client).
const STREAM_CONCURRENCY: usize = 64;

/// The longest correlation id of a SendStream request.
const MAX_CORRELATION_ID: usize = 128;

/// Implements `posthorn.v1.SendService`.
#[derive(Clone)]
pub struct SendApi {
    sender: Arc<Sender<Store>>,
    /// Test instrumentation (`POSTHORN_TEST_FAILPOINT=after_commit_before_reply`):
    /// after a SendEmail commits, announce it on stderr and never reply, so a
    /// test can kill the process between the commit and the reply.
    hang_after_commit: bool,
    /// Turns true when the server begins to shut down.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl SendApi {
    pub fn new(
        sender: Arc<Sender<Store>>,
        hang_after_commit: bool,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        SendApi {
            sender,
            hang_after_commit,
            stopping,
        }
    }
}

/// The idempotency key of a request: the field, or the `idempotency-key`
/// metadata (the REST gateway's `Idempotency-Key` header). Both given and
/// different is an error.
pub(crate) fn idempotency_key(
    field: &str,
    metadata: &MetadataMap,
) -> Result<Option<String>, Status> {
    let header = match metadata.get("idempotency-key") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    to_status(Error::invalid(
                        "idempotency_key",
                        "must be 1 to 255 printable ASCII characters",
                    ))
                })?
                .to_owned(),
        ),
        None => None,
    };
    match (field.is_empty(), header) {
        (true, header) => Ok(header),
        (false, None) => Ok(Some(field.to_owned())),
        (false, Some(header)) if header == field => Ok(Some(header)),
        (false, Some(_)) => Err(to_status(Error::invalid(
            "idempotency_key",
            "differs from the Idempotency-Key header; send one of them",
        ))),
    }
}

/// Turns a SendEmailRequest into the domain's send.
pub(crate) fn send_request(r: SendEmailRequest, key: Option<String>) -> Result<SendRequest, Error> {
    let scheduled_at = r
        .scheduled_at
        .as_ref()
        .map(|t| read_timestamp(t, "scheduled_at"))
        .transpose()?;
    let mut headers: Vec<(String, String)> = r.headers.into_iter().collect();
    headers.sort();
    let mut metadata: Vec<(String, String)> = r.metadata.into_iter().collect();
    metadata.sort();
    let variables = r.variables.as_ref().map(struct_to_json).unwrap_or_default();
    Ok(SendRequest {
        input: SendInput {
            from_email: r.from_email,
            from_name: r.from_name,
            to: r.to,
            cc: r.cc,
            bcc: r.bcc,
            reply_to: r.reply_to,
            subject: r.subject,
            html: r.html,
            text: r.text,
            template: r.template,
            template_version: r.template_version,
            has_variables: !variables.is_empty(),
            headers,
            tags: r.tags,
            metadata,
            attachments: r
                .attachments
                .into_iter()
                .map(|a| AttachmentInput {
                    filename: a.filename,
                    content_type: a.content_type,
                    content: a.content,
                    content_id: a.content_id,
                })
                .collect(),
            scheduled_at,
        },
        variables,
        flags: Flags {
            track_opens: r.track_opens,
            track_clicks: r.track_clicks,
            unsubscribe: r.unsubscribe,
        },
        idempotency_key: key,
    })
}

fn receipt_to_proto(receipt: Receipt) -> SendEmailResponse {
    SendEmailResponse {
        status: status_to_proto(receipt.status()),
        id: receipt.id,
        recipient_count: receipt.recipient_count,
        created_at: Some(timestamp(receipt.created_at)),
        scheduled_at: receipt.scheduled_at.map(timestamp),
    }
}

/// A domain error as the `google.rpc.Status` message a batch or stream
/// result carries: the same code, message and details a unary call returns.
pub(crate) fn rpc_status(error: Error) -> RpcStatus {
    let status = to_status(error);
    RpcStatus::decode(status.details()).unwrap_or(RpcStatus {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: Vec::new(),
    })
}

/// Marks a replayed answer with `idempotent-replayed: true`.
pub(crate) fn respond<T, U>(answer: Answer<T>, convert: impl FnOnce(T) -> U) -> Response<U> {
    let mut response = Response::new(convert(answer.value));
    if answer.replayed {
        response
            .metadata_mut()
            .insert("idempotent-replayed", "true".parse().expect("ascii"));
    }
    response
}

#[tonic::async_trait]
impl SendService for SendApi {
    async fn send_email(
        &self,
        request: Request<SendEmailRequest>,
    ) -> Result<Response<SendEmailResponse>, Status> {
        let caller = caller(&request)?.clone();
        let key = idempotency_key(&request.get_ref().idempotency_key, request.metadata())?;
        let send = send_request(request.into_inner(), key).map_err(to_status)?;
        let answer = self.sender.send(&caller, send).await.map_err(to_status)?;
        if self.hang_after_commit && !answer.replayed {
            eprintln!(
                "failpoint after_commit_before_reply: message {} committed; not replying",
                answer.value.id
            );
            std::future::pending::<()>().await;
        }
        Ok(respond(answer, receipt_to_proto))
    }

    async fn send_batch(
        &self,
        request: Request<SendBatchRequest>,
    ) -> Result<Response<SendBatchResponse>, Status> {
        let caller = caller(&request)?.clone();
        let key = idempotency_key(&request.get_ref().idempotency_key, request.metadata())?;
        // An unreadable item (a bad timestamp) fails alone.
        let items = request
            .into_inner()
            .messages
            .into_iter()
            .map(|item| {
                let key = (!item.idempotency_key.is_empty()).then(|| item.idempotency_key.clone());
                send_request(item, key)
            })
            .collect();
        let answer = self
            .sender
            .send_batch(&caller, items, key)
            .await
            .map_err(to_status)?;
        Ok(respond(answer, |results| {
            let mut accepted = 0;
            let results: Vec<SendBatchResult> = results
                .into_iter()
                .enumerate()
                .map(|(index, result)| match result {
                    Ok(receipt) => {
                        accepted += 1;
                        SendBatchResult {
                            index: index as i32,
                            status: status_to_proto(receipt.status()),
                            id: receipt.id,
                            error: None,
                        }
                    }
                    Err(error) => SendBatchResult {
                        index: index as i32,
                        id: String::new(),
                        status: 0,
                        error: Some(rpc_status(error)),
                    },
                })
                .collect();
            SendBatchResponse {
                accepted_count: accepted,
                failed_count: results.len() as i32 - accepted,
                results,
            }
        }))
    }

    type SendStreamStream = BoxStream<'static, Result<SendStreamResponse, Status>>;

    async fn send_stream(
        &self,
        request: Request<Streaming<SendStreamRequest>>,
    ) -> Result<Response<Self::SendStreamStream>, Status> {
        let caller = Arc::new(caller(&request)?.clone());
        let sender = self.sender.clone();
        // When shutdown begins, no more requests are read: those already
        // read are committed and answered, then the stream ends with
        // SHUTTING_DOWN, so the client resends the rest elsewhere (with
        // their idempotency keys) instead of holding the shutdown.
        let cut = super::Cut::default();
        let stop = cut.at_shutdown(
            self.stopping.clone(),
            "requests not answered on this stream were not read; send them again (with their idempotency keys)",
        );
        // A request that does not decode has no correlation id to answer
        // under and leaves the stream unreadable: reading stops there too,
        // the requests read before it are committed and answered, and then
        // the stream ends with its INVALID_ARGUMENT.
        let requests = {
            let cut = cut.clone();
            request
                .into_inner()
                .take_until(stop)
                .scan((), move |(), item| {
                    std::future::ready(item.map_err(|status| cut.record(status)).ok())
                })
        };
        let responses = requests
            .map(move |item| {
                let sender = sender.clone();
                let caller = caller.clone();
                async move {
                    let correlation_id = item.correlation_id.clone();
                    let failed = |error: Error| SendStreamResponse {
                        correlation_id: correlation_id.clone(),
                        error: Some(rpc_status(error)),
                        ..Default::default()
                    };
                    if correlation_id.chars().count() > MAX_CORRELATION_ID {
                        return Ok(failed(Error::invalid(
                            "correlation_id",
                            format!("at most {MAX_CORRELATION_ID} characters"),
                        )));
                    }
                    let Some(message) = item.message else {
                        return Ok(failed(Error::invalid(
                            "message",
                            "required: the email to send",
                        )));
                    };
                    let key = (!message.idempotency_key.is_empty())
                        .then(|| message.idempotency_key.clone());
                    let send = match send_request(message, key) {
                        Ok(send) => send,
                        Err(error) => return Ok(failed(error)),
                    };
                    Ok(match sender.send(&caller, send).await {
                        Ok(answer) => SendStreamResponse {
                            correlation_id: correlation_id.clone(),
                            status: status_to_proto(answer.value.status()),
                            created_at: Some(timestamp(answer.value.created_at)),
                            id: answer.value.id,
                            error: None,
                        },
                        Err(error) => failed(error),
                    })
                }
            })
            .buffer_unordered(STREAM_CONCURRENCY)
            .chain(cut.tail());
        Ok(Response::new(responses.boxed()))
    }
}
