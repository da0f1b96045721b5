//! The WebhooksService handlers: the endpoints (create, list, get, update,
//! delete, rotate the secret), the signed test call, and the delivery log
//! with its replay. The deliveries themselves are sent by the dispatcher
//! (`delivery::webhooks`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::caller;
use super::convert::{mask_paths, timestamp, wanted};
use super::status::to_status;
use crate::delivery::webhook_http::HttpSender;
use crate::domain::webhook_deliveries::{
    DeliveryFilter, DeliveryStatus, LoggedAttempt, WebhookDelivery,
};
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

fn status_to_proto(status: DeliveryStatus) -> pb::WebhookDeliveryStatus {
    match status {
        DeliveryStatus::Pending => pb::WebhookDeliveryStatus::Pending,
        DeliveryStatus::Succeeded => pb::WebhookDeliveryStatus::Succeeded,
        DeliveryStatus::Abandoned => pb::WebhookDeliveryStatus::Abandoned,
    }
}

fn attempt_to_proto(a: LoggedAttempt) -> pb::WebhookAttempt {
    pb::WebhookAttempt {
        attempted_at: Some(timestamp(a.attempted_at)),
        status_code: i32::from(a.status_code),
        latency: prost_types::Duration::try_from(a.latency).ok(),
        error: a.error,
        response_snippet: a.snippet,
    }
}

fn delivery_to_proto(d: WebhookDelivery) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        id: d.id,
        webhook_id: d.webhook_id,
        event_id: d.event_id,
        event_type: d.event_type,
        status: status_to_proto(d.status).into(),
        attempts: d.attempts.into_iter().map(attempt_to_proto).collect(),
        next_attempt_at: d.next_attempt_at.map(timestamp),
        created_at: Some(timestamp(d.created_at)),
    }
}

/// The delivery state a list asks for; UNSPECIFIED means any.
fn status_filter(value: i32) -> Result<Option<DeliveryStatus>, Status> {
    match pb::WebhookDeliveryStatus::try_from(value) {
        Ok(pb::WebhookDeliveryStatus::Unspecified) => Ok(None),
        Ok(pb::WebhookDeliveryStatus::Pending) => Ok(Some(DeliveryStatus::Pending)),
        Ok(pb::WebhookDeliveryStatus::Succeeded) => Ok(Some(DeliveryStatus::Succeeded)),
        Ok(pb::WebhookDeliveryStatus::Abandoned) => Ok(Some(DeliveryStatus::Abandoned)),
        Err(_) => Err(to_status(crate::domain::Error::invalid(
            "status",
            format!("unknown delivery status {value}"),
        ))),
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
        request: Request<ListWebhookDeliveriesRequest>,
    ) -> Result<Response<ListWebhookDeliveriesResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let body = request.into_inner();
        let filter = DeliveryFilter {
            status: status_filter(body.status)?,
            event_type: (!body.event_type.is_empty()).then_some(body.event_type),
        };
        let page = self
            .webhooks
            .list_deliveries(&account, &body.id, filter, body.page_size, &body.page_token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListWebhookDeliveriesResponse {
            deliveries: page.deliveries.into_iter().map(delivery_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn retry_webhook_delivery(
        &self,
        request: Request<RetryWebhookDeliveryRequest>,
    ) -> Result<Response<RetryWebhookDeliveryResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let body = request.get_ref();
        let delivery = self
            .webhooks
            .retry_delivery(&account, &body.id, &body.delivery_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(RetryWebhookDeliveryResponse {
            delivery: Some(delivery_to_proto(delivery)),
        }))
    }
}
