//! The ContactsService handlers. Its behaviour arrives with the Contacts and suppressions work; until
//! then every RPC answers UNIMPLEMENTED with a message that says so.

use tonic::{Request, Response, Status};

use super::status::not_built;
use crate::proto::v1::contacts_service_server::ContactsService;
use crate::proto::v1::{
    DeleteContactRequest, DeleteContactResponse, GetContactRequest, GetContactResponse,
    ListContactsRequest, ListContactsResponse, UnsubscribeContactRequest,
    UnsubscribeContactResponse, UpsertContactRequest, UpsertContactResponse,
};

const CAPABILITY: &str = "it arrives with the Contacts and suppressions work";

/// Implements `posthorn.v1.ContactsService`.
#[derive(Clone, Debug, Default)]
pub struct ContactsApi;

#[tonic::async_trait]
impl ContactsService for ContactsApi {
    async fn upsert_contact(
        &self,
        _request: Request<UpsertContactRequest>,
    ) -> Result<Response<UpsertContactResponse>, Status> {
        Err(not_built("ContactsService.UpsertContact", CAPABILITY))
    }

    async fn get_contact(
        &self,
        _request: Request<GetContactRequest>,
    ) -> Result<Response<GetContactResponse>, Status> {
        Err(not_built("ContactsService.GetContact", CAPABILITY))
    }

    async fn list_contacts(
        &self,
        _request: Request<ListContactsRequest>,
    ) -> Result<Response<ListContactsResponse>, Status> {
        Err(not_built("ContactsService.ListContacts", CAPABILITY))
    }

    async fn delete_contact(
        &self,
        _request: Request<DeleteContactRequest>,
    ) -> Result<Response<DeleteContactResponse>, Status> {
        Err(not_built("ContactsService.DeleteContact", CAPABILITY))
    }

    async fn unsubscribe_contact(
        &self,
        _request: Request<UnsubscribeContactRequest>,
    ) -> Result<Response<UnsubscribeContactResponse>, Status> {
        Err(not_built("ContactsService.UnsubscribeContact", CAPABILITY))
    }
}
