//! The TemplatesService handlers. Its behaviour arrives with the Templates and branding work; until
//! then every RPC answers UNIMPLEMENTED with a message that says so.

use tonic::{Request, Response, Status};

use super::status::not_built;
use crate::proto::v1::templates_service_server::TemplatesService;
use crate::proto::v1::{
    CloneTemplateRequest, CloneTemplateResponse, CreateTemplateRequest, CreateTemplateResponse,
    DeleteTemplateRequest, DeleteTemplateResponse, GetBrandingRequest, GetBrandingResponse,
    GetTemplateRequest, GetTemplateResponse, ListTemplatesRequest, ListTemplatesResponse,
    PublishTemplateRequest, PublishTemplateResponse, RenderTemplateRequest, RenderTemplateResponse,
    UpdateBrandingRequest, UpdateBrandingResponse, UpdateTemplateRequest, UpdateTemplateResponse,
};

const CAPABILITY: &str = "it arrives with the Templates and branding work";

/// Implements `posthorn.v1.TemplatesService`.
#[derive(Clone, Debug, Default)]
pub struct TemplatesApi;

#[tonic::async_trait]
impl TemplatesService for TemplatesApi {
    async fn list_templates(
        &self,
        _request: Request<ListTemplatesRequest>,
    ) -> Result<Response<ListTemplatesResponse>, Status> {
        Err(not_built("TemplatesService.ListTemplates", CAPABILITY))
    }

    async fn get_template(
        &self,
        _request: Request<GetTemplateRequest>,
    ) -> Result<Response<GetTemplateResponse>, Status> {
        Err(not_built("TemplatesService.GetTemplate", CAPABILITY))
    }

    async fn create_template(
        &self,
        _request: Request<CreateTemplateRequest>,
    ) -> Result<Response<CreateTemplateResponse>, Status> {
        Err(not_built("TemplatesService.CreateTemplate", CAPABILITY))
    }

    async fn update_template(
        &self,
        _request: Request<UpdateTemplateRequest>,
    ) -> Result<Response<UpdateTemplateResponse>, Status> {
        Err(not_built("TemplatesService.UpdateTemplate", CAPABILITY))
    }

    async fn publish_template(
        &self,
        _request: Request<PublishTemplateRequest>,
    ) -> Result<Response<PublishTemplateResponse>, Status> {
        Err(not_built("TemplatesService.PublishTemplate", CAPABILITY))
    }

    async fn clone_template(
        &self,
        _request: Request<CloneTemplateRequest>,
    ) -> Result<Response<CloneTemplateResponse>, Status> {
        Err(not_built("TemplatesService.CloneTemplate", CAPABILITY))
    }

    async fn delete_template(
        &self,
        _request: Request<DeleteTemplateRequest>,
    ) -> Result<Response<DeleteTemplateResponse>, Status> {
        Err(not_built("TemplatesService.DeleteTemplate", CAPABILITY))
    }

    async fn render_template(
        &self,
        _request: Request<RenderTemplateRequest>,
    ) -> Result<Response<RenderTemplateResponse>, Status> {
        Err(not_built("TemplatesService.RenderTemplate", CAPABILITY))
    }

    async fn get_branding(
        &self,
        _request: Request<GetBrandingRequest>,
    ) -> Result<Response<GetBrandingResponse>, Status> {
        Err(not_built("TemplatesService.GetBranding", CAPABILITY))
    }

    async fn update_branding(
        &self,
        _request: Request<UpdateBrandingRequest>,
    ) -> Result<Response<UpdateBrandingResponse>, Status> {
        Err(not_built("TemplatesService.UpdateBranding", CAPABILITY))
    }
}
