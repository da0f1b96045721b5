//! `GET /v1/templates/{slug}/preview`: a page showing a template rendered
//! with its examples and the account's branding, for people choosing one.
//! Authenticated like `RenderTemplate` (scope `templates:read`).

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::auth::AuthState;
use super::status::http_error as error;
use crate::domain::templates::{TemplateOwner, Templates, catalog};

use crate::storage::Store;

/// The page (`src/pages/preview.html`).
#[derive(Template)]
#[template(path = "preview.html")]
struct PreviewPage {
    slug: String,
    name: String,
    category: String,
    description: String,
    owner: &'static str,
    version: i32,
    subject: String,
    html: String,
    text: String,
    variables: Vec<PreviewVariable>,
}

struct PreviewVariable {
    name: String,
    required: bool,
    description: String,
    example: String,
}

#[derive(Clone)]
struct PreviewState {
    auth: Arc<AuthState>,
    templates: Arc<Templates<Store>>,
}

/// The preview route, ready to merge into the server's router.
pub fn router(auth: Arc<AuthState>, templates: Arc<Templates<Store>>) -> Router {
    Router::new()
        .route("/v1/templates/{slug}/preview", get(preview))
        .with_state(PreviewState { auth, templates })
}

async fn preview(
    State(state): State<PreviewState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    let context = match state
        .auth
        .authorize("/posthorn.v1.TemplatesService/RenderTemplate", &headers)
        .await
    {
        Ok(context) => context,
        Err(e) => return error(e),
    };
    let template = match state.templates.get(&context.account_id, &slug, 0).await {
        Ok(template) => template,
        Err(e) => return error(e),
    };
    let variables = catalog::example_variables(&template);
    let report = match state
        .templates
        .dry_run(&context.account_id, &slug, template.version, &variables)
        .await
    {
        Ok(report) => report,
        Err(e) => return error(e),
    };
    let page = PreviewPage {
        owner: match template.owner {
            TemplateOwner::System => "system template",
            TemplateOwner::Account => "account template",
        },
        version: report.version,
        subject: report.rendered.subject,
        html: report.rendered.html,
        text: report.rendered.text,
        variables: template
            .variables
            .iter()
            .map(|v| PreviewVariable {
                name: v.name.clone(),
                required: v.required,
                description: v.description.clone(),
                example: v.example.to_string(),
            })
            .collect(),
        slug: template.slug,
        name: template.name,
        category: template.category,
        description: template.description,
    };
    match page.render() {
        Ok(html) => {
            let mut response = (StatusCode::OK, html).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            // The page runs no script; the email runs in a sandboxed frame.
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; frame-src 'self'"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => error(crate::domain::Error::Internal(e.into())),
    }
}
