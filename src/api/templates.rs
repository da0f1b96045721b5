//! The TemplatesService handlers: parse, call one use case, convert.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{json_to_value, mask_paths, struct_to_json, timestamp, value_to_json, wanted};
use super::{caller, status::to_status};
use crate::domain::Error;
use crate::domain::templates::branding::Branding;
use crate::domain::templates::{
    TemplateDef, TemplateDraft, TemplateOwner, Templates, VariableSpec,
};
use crate::proto::v1::templates_service_server::TemplatesService;
use crate::proto::v1::{
    self as pb, CloneTemplateRequest, CloneTemplateResponse, CreateTemplateRequest,
    CreateTemplateResponse, DeleteTemplateRequest, DeleteTemplateResponse, GetBrandingRequest,
    GetBrandingResponse, GetTemplateRequest, GetTemplateResponse, ListTemplatesRequest,
    ListTemplatesResponse, PublishTemplateRequest, PublishTemplateResponse, RenderTemplateRequest,
    RenderTemplateResponse, UpdateBrandingRequest, UpdateBrandingResponse, UpdateTemplateRequest,
    UpdateTemplateResponse,
};
use crate::storage::Store;

/// Implements `posthorn.v1.TemplatesService`.
#[derive(Clone)]
pub struct TemplatesApi {
    templates: Arc<Templates<Store>>,
}

impl TemplatesApi {
    pub fn new(templates: Arc<Templates<Store>>) -> Self {
        TemplatesApi { templates }
    }
}

fn owner_to_proto(owner: TemplateOwner) -> pb::TemplateOwner {
    match owner {
        TemplateOwner::System => pb::TemplateOwner::System,
        TemplateOwner::Account => pb::TemplateOwner::Account,
    }
}

/// A template as lists show it: without its sources and versions.
fn listed(t: TemplateDef) -> pb::Template {
    pb::Template {
        subject: String::new(),
        html: String::new(),
        text: String::new(),
        versions: Vec::new(),
        ..template_to_proto(t)
    }
}

fn template_to_proto(t: TemplateDef) -> pb::Template {
    pb::Template {
        owner: owner_to_proto(t.owner) as i32,
        slug: t.slug,
        name: t.name,
        category: t.category,
        description: t.description,
        subject: t.source.subject,
        html: t.source.html,
        text: t.source.text,
        variables: t
            .variables
            .iter()
            .map(|v| pb::TemplateVariable {
                name: v.name.clone(),
                required: v.required,
                description: v.description.clone(),
                example: Some(json_to_value(&v.example)),
            })
            .collect(),
        version: t.version,
        published_version: t.published_version.unwrap_or_default(),
        versions: t
            .versions
            .into_iter()
            .map(|v| pb::TemplateVersion {
                version: v.version,
                published: v.published,
                created_at: Some(timestamp(v.created_at)),
                published_at: v.published_at.map(timestamp),
            })
            .collect(),
        created_at: t.created_at.map(timestamp),
        updated_at: t.updated_at.map(timestamp),
    }
}

fn variables_from_proto(variables: &[pb::TemplateVariable]) -> Vec<VariableSpec> {
    variables
        .iter()
        .map(|v| VariableSpec {
            name: v.name.clone(),
            required: v.required,
            description: v.description.clone(),
            example: v.example.as_ref().map(value_to_json).unwrap_or_default(),
        })
        .collect()
}

fn branding_to_proto(b: Branding) -> pb::Branding {
    pb::Branding {
        brand_name: b.brand_name,
        logo_url: b.logo_url,
        primary_color: b.primary_color,
        accent_color: b.accent_color,
        support_email: b.support_email,
        support_url: b.support_url,
        footer_html: b.footer_html,
        button_radius: b.button_radius,
        privacy_policy_url: b.privacy_policy_url,
        terms_url: b.terms_url,
        updated_at: b.updated_at.map(timestamp),
    }
}

#[tonic::async_trait]
impl TemplatesService for TemplatesApi {
    async fn list_templates(
        &self,
        request: Request<ListTemplatesRequest>,
    ) -> Result<Response<ListTemplatesResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let body = request.into_inner();
        let owner = match pb::TemplateOwner::try_from(body.owner) {
            Ok(pb::TemplateOwner::System) => Some(TemplateOwner::System),
            Ok(pb::TemplateOwner::Account) => Some(TemplateOwner::Account),
            _ => None,
        };
        let page = self
            .templates
            .list(
                &account,
                &body.category,
                owner,
                body.page_size,
                &body.page_token,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListTemplatesResponse {
            templates: page.templates.into_iter().map(listed).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_template(
        &self,
        request: Request<GetTemplateRequest>,
    ) -> Result<Response<GetTemplateResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let body = request.into_inner();
        let template = self
            .templates
            .get(&account, &body.slug, body.version)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetTemplateResponse {
            template: Some(template_to_proto(template)),
        }))
    }

    async fn create_template(
        &self,
        request: Request<CreateTemplateRequest>,
    ) -> Result<Response<CreateTemplateResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let b = request.into_inner();
        let draft = TemplateDraft {
            name: Some(b.name),
            category: Some(if b.category.is_empty() {
                "custom".into()
            } else {
                b.category
            }),
            description: Some(b.description),
            subject: Some(b.subject),
            html: Some(b.html),
            text: Some(b.text),
            variables: Some(variables_from_proto(&b.variables)),
        };
        let template = self
            .templates
            .create(&account, &b.slug, draft, b.publish)
            .await
            .map_err(to_status)?;
        Ok(Response::new(CreateTemplateResponse {
            template: Some(template_to_proto(template)),
        }))
    }

    async fn update_template(
        &self,
        request: Request<UpdateTemplateRequest>,
    ) -> Result<Response<UpdateTemplateResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let b = request.into_inner();
        let mask = mask_paths(
            b.update_mask.as_ref(),
            &[
                "name",
                "category",
                "description",
                "subject",
                "html",
                "text",
                "variables",
            ],
        )?;
        let pick =
            |path: &str, value: String| wanted(&mask, path, !value.is_empty()).then_some(value);
        let draft = TemplateDraft {
            name: pick("name", b.name),
            category: pick("category", b.category),
            description: pick("description", b.description),
            subject: pick("subject", b.subject),
            html: pick("html", b.html),
            text: pick("text", b.text),
            variables: wanted(&mask, "variables", !b.variables.is_empty())
                .then(|| variables_from_proto(&b.variables)),
        };
        let template = self
            .templates
            .update(&account, &b.slug, draft)
            .await
            .map_err(to_status)?;
        Ok(Response::new(UpdateTemplateResponse {
            template: Some(template_to_proto(template)),
        }))
    }

    async fn publish_template(
        &self,
        request: Request<PublishTemplateRequest>,
    ) -> Result<Response<PublishTemplateResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let b = request.into_inner();
        let template = self
            .templates
            .publish(&account, &b.slug, b.version)
            .await
            .map_err(to_status)?;
        Ok(Response::new(PublishTemplateResponse {
            template: Some(template_to_proto(template)),
        }))
    }

    async fn clone_template(
        &self,
        request: Request<CloneTemplateRequest>,
    ) -> Result<Response<CloneTemplateResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let b = request.into_inner();
        let template = self
            .templates
            .clone_template(&account, &b.slug, &b.new_slug, &b.name)
            .await
            .map_err(to_status)?;
        Ok(Response::new(CloneTemplateResponse {
            template: Some(template_to_proto(template)),
        }))
    }

    async fn delete_template(
        &self,
        request: Request<DeleteTemplateRequest>,
    ) -> Result<Response<DeleteTemplateResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        self.templates
            .delete(&account, &request.get_ref().slug)
            .await
            .map_err(to_status)?;
        Ok(Response::new(DeleteTemplateResponse {}))
    }

    async fn render_template(
        &self,
        request: Request<RenderTemplateRequest>,
    ) -> Result<Response<RenderTemplateResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let b = request.into_inner();
        let variables = b.variables.as_ref().map(struct_to_json).unwrap_or_default();
        let report = self
            .templates
            .dry_run(&account, &b.slug, b.version, &variables)
            .await
            .map_err(to_status)?;
        Ok(Response::new(RenderTemplateResponse {
            subject: report.rendered.subject,
            html: report.rendered.html,
            text: report.rendered.text,
            missing_variables: report.missing_variables,
            unknown_variables: report.unknown_variables,
            version: report.version,
        }))
    }

    async fn get_branding(
        &self,
        request: Request<GetBrandingRequest>,
    ) -> Result<Response<GetBrandingResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let branding = self.templates.branding(&account).await.map_err(to_status)?;
        Ok(Response::new(GetBrandingResponse {
            branding: Some(branding_to_proto(branding)),
        }))
    }

    async fn update_branding(
        &self,
        request: Request<UpdateBrandingRequest>,
    ) -> Result<Response<UpdateBrandingResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let b = request.into_inner();
        let mask = mask_paths(
            b.update_mask.as_ref(),
            &[
                "brand_name",
                "logo_url",
                "primary_color",
                "accent_color",
                "support_email",
                "support_url",
                "footer_html",
                "button_radius",
                "privacy_policy_url",
                "terms_url",
            ],
        )?;
        let Some(given) = b.branding else {
            return Err(to_status(Error::invalid("branding", "required")));
        };
        let branding = self
            .templates
            .update_branding(&account, |current| {
                macro_rules! apply {
                    ($($field:ident),*) => {$(
                        if wanted(&mask, stringify!($field), !given.$field.is_empty()) {
                            current.$field = given.$field.clone();
                        }
                    )*};
                }
                apply!(
                    brand_name,
                    logo_url,
                    primary_color,
                    accent_color,
                    support_email,
                    support_url,
                    footer_html,
                    privacy_policy_url,
                    terms_url
                );
                if wanted(&mask, "button_radius", given.button_radius != 0) {
                    current.button_radius = given.button_radius;
                }
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(UpdateBrandingResponse {
            branding: Some(branding_to_proto(branding)),
        }))
    }
}
