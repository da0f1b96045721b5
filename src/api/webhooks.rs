//! The WebhooksService handlers. The endpoints themselves (create, list,
//! get, update, delete, rotate the secret) and the signed test call are
//! built; sending events, the delivery log and replay are not yet, and
//! answer UNIMPLEMENTED with a message that says so.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::caller;
use super::convert::{mask_paths, timestamp, wanted};
use super::status::{not_built, to_status};
use crate::delivery::webhook_http::HttpSender;
use crate::domain::webhooks::{Webhook, WebhookChange, Webhooks};
use crate::proto::v1::webhooks_service_server::WebhooksService;
use crate::proto::v1::{
    self as pb, CreateWebhookRequest, CreateWebhookResponse, DeleteWebhookRequest,
    DeleteWebhookResponse, GetWebhookRequest, GetWebhookResponse, ListWebhookDeliveriesRequest,
    ListWebhookDeliveriesResponse, ListWebhooksRequest, ListWebhooksResponse,
    RetryWebhookDeliveryRequest, RetryWebhookDeliveryResponse, RotateWebhookSecretRequest,
    RotateWebhookSecretResponse, TestWebhookRequest, TestWebhookResponse, UpdateWebhookRequest,
    UpdateWebhookResponse,
};
use crate::storage::Store;

const CAPABILITY: &str = "webhook sending arrives with the rest of the Webhooks work";

/// Implements `posthorn.v1.WebhooksService`.
#[derive(Clone)]
pub struct WebhooksApi {
    webhooks: Arc<Webhooks<Store>>,
    sender: Arc<HttpSender>,
}

impl WebhooksApi {
    pub fn new(webhooks: Arc<Webhooks<Store>>, sender: Arc<HttpSender>) -> Self {
        WebhooksApi { webhooks, sender }
    }
}

fn to_proto(w: Webhook) -> pb::Webhook {
    pb::Webhook {
        id: w.id,
        url: w.url,
        events: w.events,
        active: w.active,
        description: w.description,
        disabled_reason: w.disabled_reason.unwrap_or_default(),
        created_at: Some(timestamp(w.created_at)),
        updated_at: Some(timestamp(w.updated_at)),
    }
}

#[tonic::async_trait]
impl WebhooksService for WebhooksApi {
    async fn create_webhook(
        &self,
        request: Request<CreateWebhookRequest>,
    ) -> Result<Response<CreateWebhookResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let body = request.into_inner();
        let (webhook, secret) = self
            .webhooks
            .create(&account, &body.url, &body.events, &body.description)
            .await
            .map_err(to_status)?;
        Ok(Response::new(CreateWebhookResponse {
            webhook: Some(to_proto(webhook)),
            secret,
        }))
    }

    async fn list_webhooks(
        &self,
        request: Request<ListWebhooksRequest>,
    ) -> Result<Response<ListWebhooksResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let body = request.into_inner();
        let page = self
            .webhooks
            .list(&account, body.page_size, &body.page_token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListWebhooksResponse {
            webhooks: page.webhooks.into_iter().map(to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_webhook(
        &self,
        request: Request<GetWebhookRequest>,
    ) -> Result<Response<GetWebhookResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let webhook = self
            .webhooks
            .get(&account, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetWebhookResponse {
            webhook: Some(to_proto(webhook)),
        }))
    }

    async fn update_webhook(
        &self,
        request: Request<UpdateWebhookRequest>,
    ) -> Result<Response<UpdateWebhookResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let body = request.into_inner();
        let mask = mask_paths(
            body.update_mask.as_ref(),
            &["url", "events", "active", "description"],
        )?;
        let change = WebhookChange {
            url: wanted(&mask, "url", !body.url.is_empty()).then_some(body.url),
            events: wanted(&mask, "events", !body.events.is_empty()).then_some(body.events),
            active: match &mask {
                Some(_) => wanted(&mask, "active", false).then_some(body.active.unwrap_or(false)),
                None => body.active,
            },
            description: wanted(&mask, "description", !body.description.is_empty())
                .then_some(body.description),
        };
        let webhook = self
            .webhooks
            .update(&account, &body.id, change)
            .await
            .map_err(to_status)?;
        Ok(Response::new(UpdateWebhookResponse {
            webhook: Some(to_proto(webhook)),
        }))
    }

    async fn delete_webhook(
        &self,
        request: Request<DeleteWebhookRequest>,
    ) -> Result<Response<DeleteWebhookResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        self.webhooks
            .delete(&account, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(DeleteWebhookResponse {}))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<RotateWebhookSecretRequest>,
    ) -> Result<Response<RotateWebhookSecretResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let (secret, until) = self
            .webhooks
            .rotate_secret(&account, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(RotateWebhookSecretResponse {
            secret,
            previous_secret_expires_at: Some(timestamp(until)),
        }))
    }

    async fn test_webhook(
        &self,
        request: Request<TestWebhookRequest>,
    ) -> Result<Response<TestWebhookResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let attempt = self
            .webhooks
            .test(&account, &request.get_ref().id, self.sender.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(TestWebhookResponse {
            succeeded: attempt.succeeded(),
            status_code: i32::from(attempt.status_code),
            latency: prost_types::Duration::try_from(attempt.latency).ok(),
            response_snippet: attempt.snippet,
            error: attempt.error,
        }))
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
