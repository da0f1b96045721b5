//! The SendService handlers. Its behaviour arrives with the Accepting mail work; until
//! then every RPC answers UNIMPLEMENTED with a message that says so.

use futures::stream::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::status::not_built;
use crate::proto::v1::send_service_server::SendService;
use crate::proto::v1::{
    SendBatchRequest, SendBatchResponse, SendEmailRequest, SendEmailResponse, SendStreamRequest,
    SendStreamResponse,
};

const CAPABILITY: &str = "it arrives with the Accepting mail work";

/// Implements `posthorn.v1.SendService`.
#[derive(Clone, Debug, Default)]
pub struct SendApi;

#[tonic::async_trait]
impl SendService for SendApi {
    async fn send_email(
        &self,
        _request: Request<SendEmailRequest>,
    ) -> Result<Response<SendEmailResponse>, Status> {
        Err(not_built("SendService.SendEmail", CAPABILITY))
    }

    async fn send_batch(
        &self,
        _request: Request<SendBatchRequest>,
    ) -> Result<Response<SendBatchResponse>, Status> {
        Err(not_built("SendService.SendBatch", CAPABILITY))
    }

    type SendStreamStream = BoxStream<'static, Result<SendStreamResponse, Status>>;

    async fn send_stream(
        &self,
        _request: Request<Streaming<SendStreamRequest>>,
    ) -> Result<Response<Self::SendStreamStream>, Status> {
        Err(not_built("SendService.SendStream", CAPABILITY))
    }
}
