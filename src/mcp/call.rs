//! Calls a posthorn.v1 RPC in-process: a tonic client over the gRPC router
//! itself, so a tool's call passes the same authentication, scope check,
//! rate limit and tracing as a call from any other door.

use axum::Router;
use http::HeaderMap;
use http::uri::PathAndQuery;
use prost_reflect::{DynamicMessage, MethodDescriptor};
use tonic::Status;
use tonic::codec::Streaming;
use tonic::metadata::MetadataMap;

use crate::proto::DynamicCodec;

/// The gRPC router, called as a client.
#[derive(Clone)]
pub struct Rpc {
    grpc: Router,
}

impl Rpc {
    pub fn new(grpc: Router) -> Rpc {
        Rpc { grpc }
    }

    /// Calls the unary `method` with `message`, forwarding the caller's
    /// key (and trace context) from `headers`.
    pub async fn unary(
        &self,
        method: &MethodDescriptor,
        message: DynamicMessage,
        headers: &HeaderMap,
    ) -> Result<DynamicMessage, Status> {
        let mut client = self.client().await?;
        let response = client
            .unary(request(message, headers), path(method)?, codec(method))
            .await?;
        Ok(response.into_inner())
    }

    /// Calls the server-streaming `method` with `message`.
    pub async fn server_streaming(
        &self,
        method: &MethodDescriptor,
        message: DynamicMessage,
        headers: &HeaderMap,
    ) -> Result<Streaming<DynamicMessage>, Status> {
        let mut client = self.client().await?;
        let response = client
            .server_streaming(request(message, headers), path(method)?, codec(method))
            .await?;
        Ok(response.into_inner())
    }

    async fn client(&self) -> Result<tonic::client::Grpc<Router>, Status> {
        let mut client = tonic::client::Grpc::new(self.grpc.clone());
        client
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("the service is not ready: {e}")))?;
        Ok(client)
    }
}

fn request(message: DynamicMessage, headers: &HeaderMap) -> tonic::Request<DynamicMessage> {
    let mut forwarded = HeaderMap::new();
    crate::gateway::copy_request_metadata(headers, &mut forwarded);
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = MetadataMap::from_headers(forwarded);
    request
}

fn path(method: &MethodDescriptor) -> Result<PathAndQuery, Status> {
    crate::proto::grpc_path(method)
        .parse()
        .map_err(|_| Status::internal("a method of the contract has no valid path"))
}

fn codec(method: &MethodDescriptor) -> DynamicCodec {
    DynamicCodec(method.output())
}
