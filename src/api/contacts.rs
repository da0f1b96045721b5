//! The ContactsService handlers: parse, call one use case, convert.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{json_to_struct, struct_to_json, timestamp};
use super::{caller, status::to_status};
use crate::domain::contacts::{Contact, ContactFilter, ContactInput, Contacts};
use crate::proto::v1::contacts_service_server::ContactsService;
use crate::proto::v1::{
    self as pb, DeleteContactRequest, DeleteContactResponse, GetContactRequest, GetContactResponse,
    ListContactsRequest, ListContactsResponse, UnsubscribeContactRequest,
    UnsubscribeContactResponse, UpsertContactRequest, UpsertContactResponse,
};
use crate::storage::Store;

/// Implements `posthorn.v1.ContactsService`.
#[derive(Clone)]
pub struct ContactsApi {
    contacts: Arc<Contacts<Store>>,
}

impl ContactsApi {
    pub fn new(contacts: Arc<Contacts<Store>>) -> Self {
        ContactsApi { contacts }
    }
}

fn to_proto(c: Contact) -> pb::Contact {
    pb::Contact {
        email: c.email.as_str().to_owned(),
        first_name: c.first_name,
        last_name: c.last_name,
        fields: Some(json_to_struct(&c.fields)),
        lists: c.lists,
        subscribed: c.subscribed,
        unsubscribed_at: c.unsubscribed_at.map(timestamp),
        created_at: Some(timestamp(c.created_at)),
        updated_at: Some(timestamp(c.updated_at)),
    }
}

#[tonic::async_trait]
impl ContactsService for ContactsApi {
    async fn upsert_contact(
        &self,
        request: Request<UpsertContactRequest>,
    ) -> Result<Response<UpsertContactResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let body = request.into_inner();
        let input = ContactInput {
            email: body.email,
            first_name: body.first_name,
            last_name: body.last_name,
            fields: body.fields.as_ref().map(struct_to_json).unwrap_or_default(),
            lists: body.lists,
            subscribed: body.subscribed,
        };
        let (contact, created) = self
            .contacts
            .upsert(&account, input)
            .await
            .map_err(to_status)?;
        Ok(Response::new(UpsertContactResponse {
            contact: Some(to_proto(contact)),
            created,
        }))
    }

    async fn get_contact(
        &self,
        request: Request<GetContactRequest>,
    ) -> Result<Response<GetContactResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let contact = self
            .contacts
            .get(&account, &request.get_ref().email)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetContactResponse {
            contact: Some(to_proto(contact)),
        }))
    }

    async fn list_contacts(
        &self,
        request: Request<ListContactsRequest>,
    ) -> Result<Response<ListContactsResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let body = request.into_inner();
        let filter = ContactFilter {
            list: (!body.list.is_empty()).then_some(body.list),
            subscribed: body.subscribed,
        };
        let page = self
            .contacts
            .list(&account, filter, body.page_size, &body.page_token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListContactsResponse {
            contacts: page.contacts.into_iter().map(to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn delete_contact(
        &self,
        request: Request<DeleteContactRequest>,
    ) -> Result<Response<DeleteContactResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        self.contacts
            .delete(&account, &request.get_ref().email)
            .await
            .map_err(to_status)?;
        Ok(Response::new(DeleteContactResponse {}))
    }

    async fn unsubscribe_contact(
        &self,
        request: Request<UnsubscribeContactRequest>,
    ) -> Result<Response<UnsubscribeContactResponse>, Status> {
        let account = caller(&request)?.account_id.clone();
        let contact = self
            .contacts
            .unsubscribe(&account, &request.get_ref().email)
            .await
            .map_err(to_status)?;
        Ok(Response::new(UnsubscribeContactResponse {
            contact: Some(to_proto(contact)),
        }))
    }
}
