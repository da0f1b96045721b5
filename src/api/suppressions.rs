//! The SuppressionsService handlers: parse, call one use case, convert.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{from_timestamp, timestamp};
use super::{caller, status::to_status};
use crate::domain::suppressions::{
    Suppression, SuppressionOrigin, SuppressionReason, Suppressions,
};
use crate::proto::v1::suppressions_service_server::SuppressionsService;
use crate::proto::v1::{
    self as pb, CreateSuppressionRequest, CreateSuppressionResponse, DeleteSuppressionRequest,
    DeleteSuppressionResponse, GetSuppressionRequest, GetSuppressionResponse,
    ListSuppressionsRequest, ListSuppressionsResponse,
};
use crate::storage::Store;

/// Implements `posthorn.v1.SuppressionsService`.
#[derive(Clone)]
pub struct SuppressionsApi {
    suppressions: Arc<Suppressions<Store>>,
}

impl SuppressionsApi {
    pub fn new(suppressions: Arc<Suppressions<Store>>) -> Self {
        SuppressionsApi { suppressions }
    }
}

fn reason_from(value: i32) -> Option<SuppressionReason> {
    match pb::SuppressionReason::try_from(value).ok()? {
        pb::SuppressionReason::Unspecified => None,
        pb::SuppressionReason::Unsubscribed => Some(SuppressionReason::Unsubscribed),
        pb::SuppressionReason::Bounced => Some(SuppressionReason::Bounced),
        pb::SuppressionReason::Complained => Some(SuppressionReason::Complained),
        pb::SuppressionReason::Other => Some(SuppressionReason::Other),
    }
}

fn to_proto(s: Suppression) -> pb::Suppression {
    let reason = match s.reason {
        SuppressionReason::Unsubscribed => pb::SuppressionReason::Unsubscribed,
        SuppressionReason::Bounced => pb::SuppressionReason::Bounced,
        SuppressionReason::Complained => pb::SuppressionReason::Complained,
        SuppressionReason::Other => pb::SuppressionReason::Other,
    };
    let origin = match s.origin {
        SuppressionOrigin::Api => pb::SuppressionOrigin::Api,
        SuppressionOrigin::Bounce => pb::SuppressionOrigin::Bounce,
        SuppressionOrigin::Complaint => pb::SuppressionOrigin::Complaint,
        SuppressionOrigin::UnsubscribeLink => pb::SuppressionOrigin::UnsubscribeLink,
    };
    pb::Suppression {
        email: s.email.as_str().to_owned(),
        reason: reason as i32,
        origin: origin as i32,
        created_at: Some(timestamp(s.created_at)),
        expires_at: s.expires_at.map(timestamp),
        message_id: s.message_id.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl SuppressionsService for SuppressionsApi {
    async fn create_suppression(
        &self,
        request: Request<CreateSuppressionRequest>,
    ) -> Result<Response<CreateSuppressionResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let body = request.into_inner();
        let expires_at = match body.expires_at.map(|t| from_timestamp(&t, "expires_at")) {
            Some(Err(status)) => return Err(status),
            Some(Ok(at)) => Some(at),
            None => None,
        };
        let suppression = self
            .suppressions
            .create(&account, &body.email, reason_from(body.reason), expires_at)
            .await
            .map_err(to_status)?;
        Ok(Response::new(CreateSuppressionResponse {
            suppression: Some(to_proto(suppression)),
        }))
    }

    async fn get_suppression(
        &self,
        request: Request<GetSuppressionRequest>,
    ) -> Result<Response<GetSuppressionResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let found = self
            .suppressions
            .get(&account, &request.get_ref().email)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetSuppressionResponse {
            suppression: Some(to_proto(found)),
        }))
    }

    async fn list_suppressions(
        &self,
        request: Request<ListSuppressionsRequest>,
    ) -> Result<Response<ListSuppressionsResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let body = request.into_inner();
        let page = self
            .suppressions
            .list(
                &account,
                reason_from(body.reason),
                body.page_size,
                &body.page_token,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListSuppressionsResponse {
            suppressions: page.suppressions.into_iter().map(to_proto).collect(),
            next_page_token: page.next.map(|c| c.token()).unwrap_or_default(),
        }))
    }

    async fn delete_suppression(
        &self,
        request: Request<DeleteSuppressionRequest>,
    ) -> Result<Response<DeleteSuppressionResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        self.suppressions
            .delete(&account, &request.get_ref().email)
            .await
            .map_err(to_status)?;
        Ok(Response::new(DeleteSuppressionResponse {}))
    }
}
