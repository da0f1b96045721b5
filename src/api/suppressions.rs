//! The SuppressionsService handlers. Its behaviour arrives with the Contacts and suppressions work; until
//! then every RPC answers UNIMPLEMENTED with a message that says so.

use tonic::{Request, Response, Status};

use super::status::not_built;
use crate::proto::v1::suppressions_service_server::SuppressionsService;
use crate::proto::v1::{
    CreateSuppressionRequest, CreateSuppressionResponse, DeleteSuppressionRequest,
    DeleteSuppressionResponse, GetSuppressionRequest, GetSuppressionResponse,
    ListSuppressionsRequest, ListSuppressionsResponse,
};

const CAPABILITY: &str = "it arrives with the Contacts and suppressions work";

/// Implements `posthorn.v1.SuppressionsService`.
#[derive(Clone, Debug, Default)]
pub struct SuppressionsApi;

#[tonic::async_trait]
impl SuppressionsService for SuppressionsApi {
    async fn create_suppression(
        &self,
        _request: Request<CreateSuppressionRequest>,
    ) -> Result<Response<CreateSuppressionResponse>, Status> {
        Err(not_built(
            "SuppressionsService.CreateSuppression",
            CAPABILITY,
        ))
    }

    async fn get_suppression(
        &self,
        _request: Request<GetSuppressionRequest>,
    ) -> Result<Response<GetSuppressionResponse>, Status> {
        Err(not_built("SuppressionsService.GetSuppression", CAPABILITY))
    }

    async fn list_suppressions(
        &self,
        _request: Request<ListSuppressionsRequest>,
    ) -> Result<Response<ListSuppressionsResponse>, Status> {
        Err(not_built(
            "SuppressionsService.ListSuppressions",
            CAPABILITY,
        ))
    }

    async fn delete_suppression(
        &self,
        _request: Request<DeleteSuppressionRequest>,
    ) -> Result<Response<DeleteSuppressionResponse>, Status> {
        Err(not_built(
            "SuppressionsService.DeleteSuppression",
            CAPABILITY,
        ))
    }
}
