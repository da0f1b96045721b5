//! Contacts: the people an account mails, with their names, custom fields,
//! lists and subscription state. Unsubscribing a contact also suppresses
//! its address, so nothing is sent to it until the suppression is removed
//! (see `suppressions`); deleting a contact suppresses nothing.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::clock::{Clock, from_micros, to_micros};
use super::email::EmailAddress;
use super::error::{Error, FieldViolation, Result};

/// The longest first or last name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// The most lists a contact belongs to, and the longest list name.
pub const MAX_LISTS: usize = 100;
pub const MAX_LIST_CHARS: usize = 64;
/// The largest custom fields, as JSON.
pub const MAX_FIELDS_BYTES: usize = 32 * 1024;
/// The page size when none is asked for, and the largest allowed.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// One contact of an account.
#[derive(Clone, Debug, PartialEq)]
pub struct Contact {
    pub account_id: String,
    pub email: EmailAddress,
    pub first_name: String,
    pub last_name: String,
    pub fields: Map<String, Value>,
    pub lists: Vec<String>,
    pub subscribed: bool,
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What UpsertContact asks for, as received.
#[derive(Clone, Debug, Default)]
pub struct ContactInput {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub fields: Map<String, Value>,
    pub lists: Vec<String>,
    /// Unset: a new contact is subscribed, an existing one keeps its state.
    pub subscribed: Option<bool>,
}

/// What ListContacts filters by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactFilter {
    pub list: Option<String>,
    pub subscribed: Option<bool>,
}

impl ContactFilter {
    /// A short digest binding page tokens to the filter they were issued for.
    fn digest(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.list.as_deref().unwrap_or(""));
        hash.update([0, self.list.is_some() as u8]);
        hash.update(match self.subscribed {
            None => "any",
            Some(true) => "subscribed",
            Some(false) => "unsubscribed",
        });
        hex::encode(&hash.finalize()[..8])
    }
}

/// Where a page of contacts continues: after this (created_at, row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContactCursor {
    pub created_at: i64,
    pub id: i64,
}

/// A contact as listed, with the row that orders it.
#[derive(Clone, Debug)]
pub struct ListedContact {
    pub row: i64,
    pub contact: Contact,
}

/// A page of contacts, oldest first.
#[derive(Clone, Debug)]
pub struct ContactPage {
    pub contacts: Vec<Contact>,
    pub next_page_token: String,
}

/// What the contact use cases need from storage.
pub trait ContactStore: Send + Sync + 'static {
    /// Returns the account's contact of `email_key`.
    fn contact(
        &self,
        account_id: &str,
        email_key: &str,
    ) -> impl Future<Output = Result<Option<Contact>>> + Send;
    /// Creates `contact`, or updates the one of the same address: its
    /// address as written, names, fields and lists, and its subscription
    /// state only when `subscribed` is given. Returns the contact as stored.
    fn upsert_contact(
        &self,
        contact: &Contact,
        subscribed: Option<bool>,
    ) -> impl Future<Output = Result<Contact>> + Send;
    /// Lists contacts oldest first, after `after`.
    fn list_contacts(
        &self,
        account_id: &str,
        filter: &ContactFilter,
        after: Option<ContactCursor>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<ListedContact>>> + Send;
    /// Removes the contact of `email_key`; whether there was one.
    fn delete_contact(
        &self,
        account_id: &str,
        email_key: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// In one transaction: marks the contact of `email_key` unsubscribed
    /// (keeping an earlier unsubscription's time) and suppresses its address
    /// for good with reason `unsubscribed`, unless a suppression without an
    /// end already holds it. None when there is no such contact.
    fn unsubscribe_contact(
        &self,
        account_id: &str,
        email_key: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Contact>>> + Send;
}

/// The contact use cases.
pub struct Contacts<S> {
    store: S,
    clock: Arc<dyn Clock>,
}

impl<S: ContactStore> Contacts<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>) -> Self {
        Contacts { store, clock }
    }

    /// Creates or updates the contact of `input.email`. Every invalid
    /// field is reported. Returns the contact and whether it was created.
    pub async fn upsert(&self, account_id: &str, input: ContactInput) -> Result<(Contact, bool)> {
        let mut violations = Vec::new();
        let email = EmailAddress::parse(&input.email)
            .map_err(|e| violations.push(FieldViolation::new("email", e)))
            .ok();
        for (field, value) in [
            ("first_name", &input.first_name),
            ("last_name", &input.last_name),
        ] {
            if let Err(reason) = check_text(value, MAX_NAME_CHARS) {
                violations.push(FieldViolation::new(field, reason));
            }
        }
        let lists = check_lists(&input.lists, &mut violations);
        let fields_size = serde_json::to_vec(&input.fields).map_or(0, |json| json.len());
        if fields_size > MAX_FIELDS_BYTES {
            violations.push(FieldViolation::new(
                "fields",
                format!("at most {MAX_FIELDS_BYTES} bytes as JSON (got {fields_size})"),
            ));
        }
        let (Some(email), true) = (email, violations.is_empty()) else {
            return Err(Error::Validation(violations));
        };
        // Stored times have microsecond precision.
        let now = from_micros(to_micros(self.clock.now()));
        let existed = self.store.contact(account_id, email.key()).await?.is_some();
        let subscribed = input.subscribed.unwrap_or(true);
        let contact = Contact {
            account_id: account_id.to_owned(),
            email,
            first_name: input.first_name,
            last_name: input.last_name,
            fields: input.fields,
            lists,
            subscribed,
            unsubscribed_at: (!subscribed).then_some(now),
            created_at: now,
            updated_at: now,
        };
        let stored = self
            .store
            .upsert_contact(&contact, input.subscribed)
            .await?;
        Ok((stored, !existed))
    }

    /// Returns the contact of `email`, else NOT_FOUND.
    pub async fn get(&self, account_id: &str, email: &str) -> Result<Contact> {
        let address = parse(email)?;
        self.store
            .contact(account_id, address.key())
            .await?
            .ok_or_else(|| not_found(&address))
    }

    /// Lists contacts, oldest first, filtered; page tokens are bound to
    /// the filter they were issued for.
    pub async fn list(
        &self,
        account_id: &str,
        filter: ContactFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<ContactPage> {
        let mut violations = Vec::new();
        let limit = super::paging::page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            .map_err(|v| violations.push(v))
            .unwrap_or(0);
        let digest = filter.digest();
        let after = match (page_token, decode_token(page_token)) {
            ("", _) => None,
            (_, Some((cursor, bound))) if bound == digest => Some(cursor),
            (_, Some(_)) => {
                violations.push(FieldViolation::new(
                    "page_token",
                    "was issued for a different filter; repeat the filter of the first page",
                ));
                None
            }
            (_, None) => {
                violations.push(FieldViolation::new(
                    "page_token",
                    "is not a page token issued by ListContacts",
                ));
                None
            }
        };
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        let mut rows = self
            .store
            .list_contacts(account_id, &filter, after, limit + 1)
            .await?;
        let next_page_token = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|last| {
                    let cursor = ContactCursor {
                        created_at: to_micros(last.contact.created_at),
                        id: last.row,
                    };
                    encode_token(cursor, &digest)
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(ContactPage {
            contacts: rows.into_iter().map(|r| r.contact).collect(),
            next_page_token,
        })
    }

    /// Deletes the contact of `email`, else NOT_FOUND. Its address is not
    /// suppressed.
    pub async fn delete(&self, account_id: &str, email: &str) -> Result<()> {
        let address = parse(email)?;
        if self.store.delete_contact(account_id, address.key()).await? {
            Ok(())
        } else {
            Err(not_found(&address))
        }
    }

    /// Marks the contact of `email` unsubscribed and suppresses its
    /// address (reason `unsubscribed`), else NOT_FOUND. Repeating it
    /// changes nothing.
    pub async fn unsubscribe(&self, account_id: &str, email: &str) -> Result<Contact> {
        let address = parse(email)?;
        let now = from_micros(to_micros(self.clock.now()));
        self.store
            .unsubscribe_contact(account_id, address.key(), now)
            .await?
            .ok_or_else(|| not_found(&address))
    }
}

fn parse(email: &str) -> Result<EmailAddress> {
    EmailAddress::parse(email).map_err(|e| Error::invalid("email", e))
}

fn not_found(address: &EmailAddress) -> Error {
    Error::NotFound {
        kind: "contact",
        id: address.as_str().to_owned(),
    }
}

/// A name or list name: at most `max` characters, no control characters
/// (names end up in headers).
fn check_text(value: &str, max: usize) -> std::result::Result<(), String> {
    let chars = value.chars().count();
    if chars > max {
        return Err(format!("at most {max} characters (got {chars})"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters (CR, LF, NUL, tab, …)".into());
    }
    Ok(())
}

/// The list names in order, duplicates removed; violations name each bad
/// one by its index.
fn check_lists(lists: &[String], violations: &mut Vec<FieldViolation>) -> Vec<String> {
    if lists.len() > MAX_LISTS {
        violations.push(FieldViolation::new(
            "lists",
            format!("at most {MAX_LISTS} lists (got {})", lists.len()),
        ));
    }
    let mut kept: Vec<String> = Vec::new();
    for (i, name) in lists.iter().enumerate() {
        let checked = if name.is_empty() {
            Err(format!("1 to {MAX_LIST_CHARS} characters (got none)"))
        } else {
            check_text(name, MAX_LIST_CHARS)
        };
        match checked {
            Err(reason) => violations.push(FieldViolation::new(format!("lists[{i}]"), reason)),
            Ok(()) if !kept.contains(name) => kept.push(name.clone()),
            Ok(()) => {}
        }
    }
    kept
}

fn encode_token(cursor: ContactCursor, digest: &str) -> String {
    hex::encode(format!("c1:{}:{}:{digest}", cursor.created_at, cursor.id))
}

fn decode_token(token: &str) -> Option<(ContactCursor, String)> {
    let raw = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let mut parts = raw.strip_prefix("c1:")?.splitn(3, ':');
    let created_at = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    let digest = parts.next()?.to_owned();
    Some((ContactCursor { created_at, id }, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_filter() {
        let cursor = ContactCursor {
            created_at: 1_700_000_000_000_000,
            id: 42,
        };
        let on_list = ContactFilter {
            list: Some("news".into()),
            subscribed: None,
        };
        let token = encode_token(cursor, &on_list.digest());
        assert_eq!(decode_token(&token), Some((cursor, on_list.digest())));
        let unsubscribed = ContactFilter {
            list: Some("news".into()),
            subscribed: Some(false),
        };
        assert_ne!(on_list.digest(), unsubscribed.digest());
        assert_ne!(
            ContactFilter::default().digest(),
            ContactFilter {
                list: Some(String::new()),
                subscribed: None
            }
            .digest()
        );
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token(&hex::encode("m1:1:2:abc")), None);
    }

    #[test]
    fn list_names_are_checked_one_by_one_and_kept_once() {
        let mut violations = Vec::new();
        let lists = [
            "news".to_owned(),
            String::new(),
            "news".to_owned(),
            "a\r\nb".to_owned(),
            "x".repeat(65),
            "product".to_owned(),
        ];
        let kept = check_lists(&lists, &mut violations);
        assert_eq!(kept, ["news", "product"]);
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["lists[1]", "lists[3]", "lists[4]"]);
    }
}
