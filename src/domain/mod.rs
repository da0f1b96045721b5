//! The core: use cases, validated types and the traits they need from the
//! outside (storage, clock). Nothing here knows about gRPC, HTTP or SQL.

pub mod accounts;
pub mod auth;
pub mod cache;
pub mod clock;
pub mod contacts;
pub mod delivery;
pub mod email;
pub mod error;
pub mod feedback;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod links;
pub mod messages;
pub mod net;
pub mod paging;
pub mod scope;
pub mod send;
pub mod suppressions;
pub mod templates;
pub mod tracking;
pub mod watch;
pub mod webhook_deliveries;
pub mod webhooks;

pub use error::{Error, FieldViolation, Reason, Result};
pub use scope::{Scope, Scopes};

/// Resolves once a committed transaction is durable: the callers it
/// concerns are answered only then, while the next transaction may already
/// be written.
pub type Durable = futures::future::BoxFuture<'static, Result<()>>;
