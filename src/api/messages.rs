//! The MessagesService handlers: the read and control side of messages,
//! their built MIME and the live event stream.

use futures::StreamExt;
use futures::stream::BoxStream;
use tonic::{Request, Response, Status};

use std::sync::Arc;

use super::caller;
use super::convert::{
    event_to_proto, event_type_from_proto, message_to_proto, read_timestamp, status_from_proto,
    status_to_proto, timestamp,
};
use super::send::{idempotency_key, respond};
use super::status::to_status;
use crate::domain::feedback::Feedback;
use crate::domain::messages::{Message, MessageFilter, Messages, filter_address};
use crate::domain::send::accept::Sender;
use crate::domain::watch::{WatchFilter, watch};
use crate::domain::{Error, FieldViolation};
use crate::proto::v1::messages_service_server::MessagesService;
use crate::proto::v1::{
    self as pb, CancelMessageRequest, CancelMessageResponse, GetMessageContentRequest,
    GetMessageContentResponse, GetMessageRequest, GetMessageResponse, ListMessagesRequest,
    ListMessagesResponse, ReportFeedbackRequest, ReportFeedbackResponse, RescheduleMessageRequest,
    RescheduleMessageResponse, ResendMessageRequest, ResendMessageResponse, WatchMessagesRequest,
    WatchMessagesResponse,
};
use crate::storage::Store;

/// Implements `posthorn.v1.MessagesService`.
#[derive(Clone)]
pub struct MessagesApi {
    messages: Arc<Messages<Store>>,
    sender: Arc<Sender<Store>>,
    feedback: Arc<Feedback<Store>>,
    store: Store,
    /// Turns true when the server begins to shut down.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl MessagesApi {
    pub fn new(
        messages: Arc<Messages<Store>>,
        sender: Arc<Sender<Store>>,
        feedback: Arc<Feedback<Store>>,
        store: Store,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        MessagesApi {
            messages,
            sender,
            feedback,
            store,
            stopping,
        }
    }
}

fn message_response(message: Message) -> Option<pb::Message> {
    Some(message_to_proto(message))
}

#[tonic::async_trait]
impl MessagesService for MessagesApi {
    async fn get_message(
        &self,
        request: Request<GetMessageRequest>,
    ) -> Result<Response<GetMessageResponse>, Status> {
        let caller = caller(&request)?;
        let message = self
            .messages
            .get(&caller.account_id, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetMessageResponse {
            message: message_response(message),
        }))
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let mut violations = Vec::new();
        let mut collect = |result: Result<Option<String>, Error>| match result {
            Ok(value) => value,
            Err(Error::Validation(mut v)) => {
                violations.append(&mut v);
                None
            }
            Err(_) => None,
        };
        let to = collect(filter_address("to", &r.to));
        let from = collect(filter_address("from", &r.from));
        let tag = collect(if r.tag.chars().count() > 64 {
            Err(Error::invalid("tag", "at most 64 characters"))
        } else {
            Ok((!r.tag.is_empty()).then(|| r.tag.clone()))
        });
        let status = match r.status {
            0 => None,
            value => match status_from_proto(value) {
                Some(status) => Some(status),
                None => {
                    violations.push(FieldViolation::new("status", "not a MessageStatus value"));
                    None
                }
            },
        };
        let mut time = |t: &Option<prost_types::Timestamp>, field: &str| match t {
            Some(t) => match read_timestamp(t, field) {
                Ok(t) => Some(t),
                Err(Error::Validation(mut v)) => {
                    violations.append(&mut v);
                    None
                }
                Err(_) => None,
            },
            None => None,
        };
        let created_after = time(&r.created_after, "created_after");
        let created_before = time(&r.created_before, "created_before");
        if !violations.is_empty() {
            return Err(to_status(Error::Validation(violations)));
        }
        let filter = MessageFilter {
            status,
            tag,
            to,
            from,
            created_after,
            created_before,
        };
        let page = self
            .messages
            .list(&caller.account_id, filter, r.page_size, &r.page_token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListMessagesResponse {
            messages: page.messages.into_iter().map(message_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn cancel_message(
        &self,
        request: Request<CancelMessageRequest>,
    ) -> Result<Response<CancelMessageResponse>, Status> {
        let caller = caller(&request)?;
        let message = self
            .messages
            .cancel(&caller.account_id, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(CancelMessageResponse {
            message: message_response(message),
        }))
    }

    async fn reschedule_message(
        &self,
        request: Request<RescheduleMessageRequest>,
    ) -> Result<Response<RescheduleMessageResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let at = r
            .scheduled_at
            .as_ref()
            .map(|t| read_timestamp(t, "scheduled_at"))
            .transpose()
            .map_err(to_status)?;
        let message = self
            .messages
            .reschedule(&caller.account_id, &r.id, at)
            .await
            .map_err(to_status)?;
        Ok(Response::new(RescheduleMessageResponse {
            message: message_response(message),
        }))
    }

    async fn resend_message(
        &self,
        request: Request<ResendMessageRequest>,
    ) -> Result<Response<ResendMessageResponse>, Status> {
        let caller = caller(&request)?.clone();
        let key = idempotency_key(&request.get_ref().idempotency_key, request.metadata())?;
        let answer = self
            .sender
            .resend(&caller, &request.get_ref().id, key)
            .await
            .map_err(to_status)?;
        Ok(respond(answer, |receipt| ResendMessageResponse {
            status: status_to_proto(receipt.status()),
            created_at: Some(timestamp(receipt.created_at)),
            resent_from: receipt.resent_from.unwrap_or_default(),
            id: receipt.id,
        }))
    }

    async fn get_message_content(
        &self,
        request: Request<GetMessageContentRequest>,
    ) -> Result<Response<GetMessageContentResponse>, Status> {
        let caller = caller(&request)?;
        let raw = self
            .messages
            .content(&caller.account_id, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetMessageContentResponse {
            content_type: "message/rfc822".into(),
            raw,
        }))
    }

    async fn report_feedback(
        &self,
        request: Request<ReportFeedbackRequest>,
    ) -> Result<Response<ReportFeedbackResponse>, Status> {
        let caller = caller(&request)?;
        let applied = self
            .feedback
            .report(&caller.account_id, &request.get_ref().report)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ReportFeedbackResponse {
            message_id: applied.message_id,
            recipient: applied.recipient,
            feedback_type: applied.feedback_type,
            recorded: applied.recorded,
        }))
    }

    type WatchMessagesStream = BoxStream<'static, Result<WatchMessagesResponse, Status>>;

    async fn watch_messages(
        &self,
        request: Request<WatchMessagesRequest>,
    ) -> Result<Response<Self::WatchMessagesStream>, Status> {
        let account_id = caller(&request)?.account_id.clone();
        let r = request.into_inner();
        let mut types = Vec::new();
        for (i, value) in r.types.iter().enumerate() {
            match event_type_from_proto(*value) {
                Some(t) => types.push(t),
                None => {
                    return Err(to_status(Error::invalid(
                        format!("types[{i}]"),
                        "must be a known event type other than unspecified",
                    )));
                }
            }
        }
        let message_id = (!r.message_id.is_empty()).then_some(r.message_id);
        if let Some(id) = &message_id {
            // An unknown or foreign message is NOT_FOUND, not an empty stream.
            self.messages
                .get(&account_id, id)
                .await
                .map_err(to_status)?;
        }
        let filter = WatchFilter {
            account_id,
            message_id,
            types,
        };
        let events = watch(self.store.clone(), filter, r.after_cursor)
            .await
            .map_err(to_status)?;
        let events = events.map(|event| {
            event
                .map(|e| WatchMessagesResponse {
                    event: Some(event_to_proto(&e)),
                })
                .map_err(to_status)
        });
        let cut = super::Cut::default();
        let stop = cut.at_shutdown(
            self.stopping.clone(),
            "watch again after the cursor of the last event received (after_cursor, or Last-Event-ID over Server-Sent Events)",
        );
        Ok(Response::new(
            events.take_until(stop).chain(cut.tail()).boxed(),
        ))
    }
}
