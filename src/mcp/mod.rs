//! The MCP door: a Model Context Protocol endpoint at `/mcp` (streamable
//! HTTP, stateless, so any process of a scaled-out deployment answers any
//! request) for AI agents. Its tools are RPCs of the contract (`tools`),
//! each called in-process through the gRPC router (`call`): keys, scopes,
//! rate limits and tracing apply as at every other door, and results are
//! the RPC's response in the REST door's JSON.

mod call;
mod tools;
mod wait;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::middleware::Next;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body_util::BodyExt as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value as Json;

use crate::api::auth::AuthState;
use crate::domain::auth::AuthContext;
use crate::gateway::{ErrorBody, MappingError};
pub use tools::{Tool, catalog};

const INSTRUCTIONS: &str = "Posthorn sends transactional email for this account. To send, find a template with list_templates (its variables are listed) and call send_email with `template` and `variables`, or give `subject` and `html`/`text` yourself; `from_email` must be a verified sender of the account. send_email returns the message id at once; pass `wait_for: \"delivered\"` to follow it, or call get_email_status with the id for its status and full timeline. Errors carry a machine-readable reason (for example SENDER_NOT_VERIFIED, VALIDATION_FAILED with the field at fault).";

/// The `/mcp` route: the MCP service behind the same API-key check as
/// every other door. A request body may be as large as the REST door's
/// (`max_body_bytes`), so a send that REST takes MCP takes too.
pub fn router(
    grpc: Router,
    auth: Arc<AuthState>,
    read_only: bool,
    max_body_bytes: usize,
) -> Router {
    let handler = Handler {
        shared: Arc::new(Shared {
            tools: catalog(read_only),
            rpc: call::Rpc::new(grpc),
        }),
    };
    // Stateless: each POST carries its own request, answered as JSON, or
    // as an event stream when progress comes before the result. Callers
    // authenticate with a key, so any Host may reach it.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(max_body_bytes)
        .disable_allowed_hosts();
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            max_body_bytes,
            answer_bad_bodies_in_json_rpc,
        ))
        .layer(axum::middleware::from_fn_with_state(auth, authenticate))
}

/// The MCP service answers a JSON body it cannot read as a message with
/// 415 and a line of text, as if the content type were at fault, and one
/// over its limit with 413 and text. Such bodies get a JSON-RPC error
/// instead: 400 and -32700 when the body is not JSON at all, 400 and
/// -32600 when it is JSON but not one JSON-RPC message (a batch, which
/// this protocol version no longer has, or an object of no known shape),
/// 413 and -32600 past the limit.
async fn answer_bad_bodies_in_json_rpc(
    State(limit): State<usize>,
    request: Request<Body>,
    next: Next,
) -> Response<Body> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !json || request.method() != http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return json_rpc_error(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                format!(
                    "the request body is larger than the limit of {limit} bytes (setting `rest_max_body_bytes`)"
                ),
            );
        }
        Err(error) => {
            return json_rpc_error(
                http::StatusCode::BAD_REQUEST,
                -32700,
                format!("the request body could not be read: {error}"),
            );
        }
    };
    // Bytes are shared, not copied: the body is judged again only when the
    // service refused it.
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    if response.status() != http::StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return json_rpc_error(
            http::StatusCode::BAD_REQUEST,
            -32700,
            format!("the body is not valid JSON: {error}"),
        );
    }
    // Its text says what the decoder found; it is short.
    let said = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let detail = said
        .strip_prefix("fail to deserialize request body ")
        .unwrap_or(&said);
    json_rpc_error(
        http::StatusCode::BAD_REQUEST,
        -32600,
        format!(
            "the body is not one JSON-RPC request, notification or response (batches are not accepted): {detail}"
        ),
    )
}

/// A JSON-RPC error answering no request in particular.
fn json_rpc_error(status: http::StatusCode, code: i32, message: String) -> Response<Body> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code, "message": message},
    });
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

/// Refuses a request without a valid key before MCP sees it (401, or 403
/// for a disabled account, with the API's error body); hands the caller
/// to the tools otherwise.
async fn authenticate(
    State(auth): State<Arc<AuthState>>,
    mut request: Request<Body>,
    next: Next,
) -> Response<Body> {
    match auth.authorize("", request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => {
            let mut response = crate::api::status::http_error(error);
            if response.status() == http::StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"posthorn\""),
                );
            }
            response
        }
    }
}

struct Shared {
    tools: Vec<Tool>,
    rpc: call::Rpc,
}

#[derive(Clone)]
struct Handler {
    shared: Arc<Shared>,
}

/// The HTTP request a call came in, with the caller the key check found.
fn request_of(
    context: &RequestContext<RoleServer>,
) -> Result<(&HeaderMap, &AuthContext), McpError> {
    let parts = context
        .extensions
        .get::<http::request::Parts>()
        .ok_or_else(|| McpError::internal_error("the HTTP request is not available", None))?;
    let caller = parts
        .extensions
        .get::<AuthContext>()
        .ok_or_else(|| McpError::internal_error("the request was not authenticated", None))?;
    Ok((&parts.headers, caller))
}

impl Handler {
    fn tool(&self, name: &str) -> Option<&Tool> {
        self.shared.tools.iter().find(|tool| tool.name == name)
    }

    fn visible<'a>(&'a self, caller: &'a AuthContext) -> impl Iterator<Item = &'a Tool> {
        self.shared
            .tools
            .iter()
            .filter(|tool| caller.scopes.grants(tool.scope))
    }
}

impl ServerHandler for Handler {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("posthorn", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.tool(name).map(|tool| tool.descriptor.clone())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let (_, caller) = request_of(&context)?;
        let tools = self.visible(caller).map(|t| t.descriptor.clone()).collect();
        let mut result = ListToolsResult::with_all_items(tools);
        // The list depends on the key's scopes: no cache may share it.
        result.cache_scope = Some(rmcp::model::CacheScope::Private);
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let (headers, _) = request_of(&context)?;
        // A tool the key lacks the scope of is not listed, but a call to it
        // reaches its RPC, which refuses it as the API does (SCOPE_MISSING).
        let Some(tool) = self.tool(&request.name) else {
            return Err(McpError::invalid_params(
                format!(
                    "unknown tool `{}`: no tool of this name is offered here",
                    request.name
                ),
                None,
            ));
        };
        let arguments = request.arguments.unwrap_or_default();
        let outcome = if tool.sends {
            wait::send(&self.shared.rpc, tool, arguments, headers, &context).await
        } else {
            call(&self.shared.rpc, tool, arguments, headers).await
        };
        Ok(match outcome {
            Ok(Answer { json, note }) => {
                let mut result = CallToolResult::structured(json);
                if let Some(note) = note {
                    result.content.push(ContentBlock::text(note));
                }
                result.into()
            }
            Err(error) => failure(error).into(),
        })
    }
}

/// A tool's result: the response JSON, and a remark for the agent.
struct Answer {
    json: Json,
    note: Option<String>,
}

/// Why a tool call failed: arguments that do not make a request, or the
/// RPC's own error.
enum Failure {
    Arguments(MappingError),
    Rpc(tonic::Status),
}

/// Calls the tool's RPC with the arguments as its request.
async fn call(
    rpc: &call::Rpc,
    tool: &Tool,
    arguments: JsonObject,
    headers: &HeaderMap,
) -> Result<Answer, Failure> {
    let message = crate::gateway::from_json(tool.method.input(), &Json::Object(arguments))
        .map_err(Failure::Arguments)?;
    let response = rpc
        .unary(&tool.method, message, headers)
        .await
        .map_err(Failure::Rpc)?;
    Ok(Answer {
        json: json_of(&response)?,
        note: None,
    })
}

fn json_of(message: &prost_reflect::DynamicMessage) -> Result<Json, Failure> {
    crate::gateway::rest_json(message).map_err(|e| {
        Failure::Rpc(tonic::Status::internal(format!(
            "the response could not be written as JSON: {e}"
        )))
    })
}

/// A tool error the agent can read: a line naming the code, the reason and
/// each field at fault, then the `google.rpc.Status` JSON the API answers
/// (also the structured content).
fn failure(failure: Failure) -> CallToolResult {
    let status = match failure {
        Failure::Arguments(error) => ErrorBody::invalid(&error).json().clone(),
        Failure::Rpc(status) => ErrorBody::from_status(&status).json().clone(),
    };
    let code = status["code"].as_i64().unwrap_or(2) as i32;
    let mut line = format!(
        "{}: {}",
        code_name(tonic::Code::from(code)),
        status["message"].as_str().unwrap_or_default()
    );
    for detail in status["details"].as_array().into_iter().flatten() {
        if let Some(reason) = detail["reason"].as_str().filter(|r| !r.is_empty()) {
            line.push_str(&format!(" (reason {reason})"));
        }
        for violation in detail["field_violations"].as_array().into_iter().flatten() {
            line.push_str(&format!(
                "\n- {}: {}",
                violation["field"].as_str().unwrap_or_default(),
                violation["description"].as_str().unwrap_or_default()
            ));
        }
    }
    let mut result = CallToolResult::error(vec![
        ContentBlock::text(line),
        ContentBlock::text(status.to_string()),
    ]);
    result.structured_content = Some(status);
    result
}

/// The code's name as gRPC writes it, for example "PERMISSION_DENIED".
fn code_name(code: tonic::Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(
            code_name(tonic::Code::PermissionDenied),
            "PERMISSION_DENIED"
        );
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(tonic::Code::Ok), "OK");
    }

    #[test]
    fn a_failure_names_the_reason_and_each_field() {
        let result = failure(Failure::Arguments(MappingError::new(
            "to",
            "expected a list",
        )));
        assert_eq!(result.is_error, Some(true));
        let text = serde_json::to_value(&result.content[0]).unwrap();
        assert_eq!(
            text["text"],
            "INVALID_ARGUMENT: field `to`: expected a list (reason VALIDATION_FAILED)\n- to: expected a list"
        );
        assert_eq!(result.structured_content.unwrap()["code"], 3);
    }
}
