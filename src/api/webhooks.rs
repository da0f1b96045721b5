//! The WebhooksService handlers. Its behaviour arrives with the Webhooks work; until
//! then every RPC answers UNIMPLEMENTED with a message that says so.

use tonic::{Request, Response, Status};

use super::status::not_built;
use crate::proto::v1::webhooks_service_server::WebhooksService;
use crate::proto::v1::{
    CreateWebhookRequest, CreateWebhookResponse, DeleteWebhookRequest, DeleteWebhookResponse,
    GetWebhookRequest, GetWebhookResponse, ListWebhookDeliveriesRequest,
    ListWebhookDeliveriesResponse, ListWebhooksRequest, ListWebhooksResponse,
    RetryWebhookDeliveryRequest, RetryWebhookDeliveryResponse, RotateWebhookSecretRequest,
    RotateWebhookSecretResponse, TestWebhookRequest, TestWebhookResponse, UpdateWebhookRequest,
    UpdateWebhookResponse,
};

const CAPABILITY: &str = "it arrives with the Webhooks work";

/// Implements `posthorn.v1.WebhooksService`.
#[derive(Clone, Debug, Default)]
pub struct WebhooksApi;

#[tonic::async_trait]
impl WebhooksService for WebhooksApi {
    async fn create_webhook(
        &self,
        _request: Request<CreateWebhookRequest>,
    ) -> Result<Response<CreateWebhookResponse>, Status> {
        Err(not_built("WebhooksService.CreateWebhook", CAPABILITY))
    }

    async fn list_webhooks(
        &self,
        _request: Request<ListWebhooksRequest>,
    ) -> Result<Response<ListWebhooksResponse>, Status> {
        Err(not_built("WebhooksService.ListWebhooks", CAPABILITY))
    }

    async fn get_webhook(
        &self,
        _request: Request<GetWebhookRequest>,
    ) -> Result<Response<GetWebhookResponse>, Status> {
        Err(not_built("WebhooksService.GetWebhook", CAPABILITY))
    }

    async fn update_webhook(
        &self,
        _request: Request<UpdateWebhookRequest>,
    ) -> Result<Response<UpdateWebhookResponse>, Status> {
        Err(not_built("WebhooksService.UpdateWebhook", CAPABILITY))
    }

    async fn delete_webhook(
        &self,
        _request: Request<DeleteWebhookRequest>,
    ) -> Result<Response<DeleteWebhookResponse>, Status> {
        Err(not_built("WebhooksService.DeleteWebhook", CAPABILITY))
    }

    async fn rotate_webhook_secret(
        &self,
        _request: Request<RotateWebhookSecretRequest>,
    ) -> Result<Response<RotateWebhookSecretResponse>, Status> {
        Err(not_built("WebhooksService.RotateWebhookSecret", CAPABILITY))
    }

    async fn test_webhook(
        &self,
        _request: Request<TestWebhookRequest>,
    ) -> Result<Response<TestWebhookResponse>, Status> {
        Err(not_built("WebhooksService.TestWebhook", CAPABILITY))
    }

    async fn list_webhook_deliveries(
        &self,
        _request: Request<ListWebhookDeliveriesRequest>,
    ) -> Result<Response<ListWebhookDeliveriesResponse>, Status> {
        Err(not_built(
            "WebhooksService.ListWebhookDeliveries",
            CAPABILITY,
        ))
    }

    async fn retry_webhook_delivery(
        &self,
        _request: Request<RetryWebhookDeliveryRequest>,
    ) -> Result<Response<RetryWebhookDeliveryResponse>, Status> {
        Err(not_built(
            "WebhooksService.RetryWebhookDelivery",
            CAPABILITY,
        ))
    }
}
