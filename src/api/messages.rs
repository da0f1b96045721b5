//! The MessagesService handlers: the read and control side of messages.
//! GetMessageContent and WatchMessages arrive with the Delivering mail work;
//! until then they answer UNIMPLEMENTED with a message that says so.

use futures::stream::BoxStream;
use tonic::{Request, Response, Status};

use std::sync::Arc;

use super::caller;
use super::convert::{
    message_to_proto, read_timestamp, status_from_proto, status_to_proto, timestamp,
};
use super::send::{idempotency_key, respond};
use super::status::{not_built, to_status};
use crate::domain::messages::{Message, MessageFilter, Messages, filter_address};
use crate::domain::send::accept::Sender;
use crate::domain::{Error, FieldViolation};
use crate::proto::v1::messages_service_server::MessagesService;
use crate::proto::v1::{
    self as pb, CancelMessageRequest, CancelMessageResponse, GetMessageContentRequest,
    GetMessageContentResponse, GetMessageRequest, GetMessageResponse, ListMessagesRequest,
    ListMessagesResponse, RescheduleMessageRequest, RescheduleMessageResponse,
    ResendMessageRequest, ResendMessageResponse, WatchMessagesRequest, WatchMessagesResponse,
};
use crate::storage::Store;

const CAPABILITY: &str = "it arrives with the Delivering mail work";

/// Implements `posthorn.v1.MessagesService`.
#[derive(Clone)]
pub struct MessagesApi {
    messages: Arc<Messages<Store>>,
    sender: Arc<Sender<Store>>,
}

impl MessagesApi {
    pub fn new(messages: Arc<Messages<Store>>, sender: Arc<Sender<Store>>) -> Self {
        MessagesApi { messages, sender }
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
        _request: Request<GetMessageContentRequest>,
    ) -> Result<Response<GetMessageContentResponse>, Status> {
        Err(not_built("MessagesService.GetMessageContent", CAPABILITY))
    }

    type WatchMessagesStream = BoxStream<'static, Result<WatchMessagesResponse, Status>>;

    async fn watch_messages(
        &self,
        _request: Request<WatchMessagesRequest>,
    ) -> Result<Response<Self::WatchMessagesStream>, Status> {
        Err(not_built("MessagesService.WatchMessages", CAPABILITY))
    }
}
