//! The MessagesService handlers. Its behaviour arrives with the Accepting mail work; until
//! then every RPC answers UNIMPLEMENTED with a message that says so.

use futures::stream::BoxStream;
use tonic::{Request, Response, Status};

use super::status::not_built;
use crate::proto::v1::messages_service_server::MessagesService;
use crate::proto::v1::{
    CancelMessageRequest, CancelMessageResponse, GetMessageContentRequest,
    GetMessageContentResponse, GetMessageRequest, GetMessageResponse, ListMessagesRequest,
    ListMessagesResponse, RescheduleMessageRequest, RescheduleMessageResponse,
    ResendMessageRequest, ResendMessageResponse, WatchMessagesRequest, WatchMessagesResponse,
};

const CAPABILITY: &str = "it arrives with the Accepting mail work";

/// Implements `posthorn.v1.MessagesService`.
#[derive(Clone, Debug, Default)]
pub struct MessagesApi;

#[tonic::async_trait]
impl MessagesService for MessagesApi {
    async fn get_message(
        &self,
        _request: Request<GetMessageRequest>,
    ) -> Result<Response<GetMessageResponse>, Status> {
        Err(not_built("MessagesService.GetMessage", CAPABILITY))
    }

    async fn list_messages(
        &self,
        _request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        Err(not_built("MessagesService.ListMessages", CAPABILITY))
    }

    async fn cancel_message(
        &self,
        _request: Request<CancelMessageRequest>,
    ) -> Result<Response<CancelMessageResponse>, Status> {
        Err(not_built("MessagesService.CancelMessage", CAPABILITY))
    }

    async fn reschedule_message(
        &self,
        _request: Request<RescheduleMessageRequest>,
    ) -> Result<Response<RescheduleMessageResponse>, Status> {
        Err(not_built("MessagesService.RescheduleMessage", CAPABILITY))
    }

    async fn resend_message(
        &self,
        _request: Request<ResendMessageRequest>,
    ) -> Result<Response<ResendMessageResponse>, Status> {
        Err(not_built("MessagesService.ResendMessage", CAPABILITY))
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
