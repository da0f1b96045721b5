//! The domain error: what can go wrong in a use case, independent of the door
//! the request came through. `api::status` converts it to `tonic::Status`.

use std::time::Duration;

/// A problem with one field of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path, for example "to[3]" or "attachments[0].filename".
    pub field: String,
    /// What is wrong, naming the rule, for example "must be a valid email address".
    pub description: String,
}

impl FieldViolation {
    /// Builds a violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Machine-readable reasons, sent as `google.rpc.ErrorInfo.reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    ValidationFailed,
    ApiKeyMissing,
    ApiKeyInvalid,
    ScopeMissing,
    SenderNotVerified,
    NotFound,
    TemplateNotFound,
    AlreadyExists,
    IdempotencyKeyReused,
    IdempotencyKeyInUse,
    FailedPrecondition,
    RateLimited,
    DailyQuotaExceeded,
    PayloadTooLarge,
    StorageUnavailable,
    ShuttingDown,
    NotImplemented,
    Internal,
}

impl Reason {
    /// Returns the reason's wire form, for example "API_KEY_MISSING".
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ValidationFailed => "VALIDATION_FAILED",
            Reason::ApiKeyMissing => "API_KEY_MISSING",
            Reason::ApiKeyInvalid => "API_KEY_INVALID",
            Reason::ScopeMissing => "SCOPE_MISSING",
            Reason::SenderNotVerified => "SENDER_NOT_VERIFIED",
            Reason::NotFound => "NOT_FOUND",
            Reason::TemplateNotFound => "TEMPLATE_NOT_FOUND",
            Reason::AlreadyExists => "ALREADY_EXISTS",
            Reason::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Reason::IdempotencyKeyInUse => "IDEMPOTENCY_KEY_IN_USE",
            Reason::FailedPrecondition => "FAILED_PRECONDITION",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::DailyQuotaExceeded => "DAILY_QUOTA_EXCEEDED",
            Reason::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Reason::StorageUnavailable => "STORAGE_UNAVAILABLE",
            Reason::ShuttingDown => "SHUTTING_DOWN",
            Reason::NotImplemented => "NOT_IMPLEMENTED",
            Reason::Internal => "INTERNAL",
        }
    }
}

/// Everything a use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is invalid; one violation per problem.
    #[error("invalid request: {}", describe(.0))]
    Validation(Vec<FieldViolation>),
    /// No API key was presented.
    #[error("missing API key: send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`")]
    ApiKeyMissing,
    /// The API key is malformed, unknown or revoked.
    #[error("invalid API key")]
    ApiKeyInvalid,
    /// The key lacks the scope the operation needs.
    #[error("the API key lacks the scope `{0}`")]
    ScopeMissing(String),
    /// The sender is not a verified identity of the account.
    #[error("sender `{0}` is not a verified identity of this account")]
    SenderNotVerified(String),
    /// The object does not exist in the caller's account.
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    /// An object with the same key exists already.
    #[error("{kind} `{id}` already exists")]
    AlreadyExists { kind: &'static str, id: String },
    /// The idempotency key was used with a different request.
    #[error("idempotency key `{0}` was already used with a different request")]
    IdempotencyKeyReused(String),
    /// The first request with this idempotency key is still running.
    #[error("a request with idempotency key `{0}` is still in progress; retry shortly")]
    IdempotencyKeyInUse(String),
    /// The object is not in a state that allows the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Too many requests; retry after the given time.
    #[error("rate limit exceeded; retry in {} s", .retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration, daily: bool },
    /// The account's daily recipient quota is used up until the next UTC day.
    #[error("the daily quota of {quota} recipients is used up; it resets at 00:00 UTC, in {} s", .retry_after.as_secs().max(1))]
    QuotaExceeded { retry_after: Duration, quota: u64 },
    /// The request is larger than allowed.
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// The database cannot be reached.
    #[error("storage unavailable")]
    StorageUnavailable(#[source] anyhow::Error),
    /// The server is stopping: a long-lived stream ends so its client can
    /// carry on with another process (or this one, restarted).
    #[error("the server is shutting down; {0}")]
    ShuttingDown(&'static str),
    /// The operation is part of the contract but not built yet.
    #[error("{0}")]
    NotImplemented(String),
    /// Anything else: logged with its cause, answered as "internal error".
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// The error with its whole chain of causes, for a log line or for
    /// passing it on to several callers.
    pub fn chain(self) -> String {
        format!("{:#}", anyhow::Error::from(self))
    }

    /// Builds a validation error with a single violation.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::Validation(vec![FieldViolation::new(field, description)])
    }

    /// Returns the machine-readable reason.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Validation(_) => Reason::ValidationFailed,
            Error::ApiKeyMissing => Reason::ApiKeyMissing,
            Error::ApiKeyInvalid => Reason::ApiKeyInvalid,
            Error::ScopeMissing(_) => Reason::ScopeMissing,
            Error::SenderNotVerified(_) => Reason::SenderNotVerified,
            Error::NotFound {
                kind: "template", ..
            } => Reason::TemplateNotFound,
            Error::NotFound { .. } => Reason::NotFound,
            Error::AlreadyExists { .. } => Reason::AlreadyExists,
            Error::IdempotencyKeyReused(_) => Reason::IdempotencyKeyReused,
            Error::IdempotencyKeyInUse(_) => Reason::IdempotencyKeyInUse,
            Error::FailedPrecondition(_) => Reason::FailedPrecondition,
            Error::RateLimited { daily: false, .. } => Reason::RateLimited,
            Error::RateLimited { daily: true, .. } | Error::QuotaExceeded { .. } => {
                Reason::DailyQuotaExceeded
            }
            Error::PayloadTooLarge(_) => Reason::PayloadTooLarge,
            Error::StorageUnavailable(_) => Reason::StorageUnavailable,
            Error::ShuttingDown(_) => Reason::ShuttingDown,
            Error::NotImplemented(_) => Reason::NotImplemented,
            Error::Internal(_) => Reason::Internal,
        }
    }
}

/// The result of a use case.
pub type Result<T, E = Error> = std::result::Result<T, E>;
