//! The one conversion from the domain error to `tonic::Status`, with
//! `google.rpc` details: `ErrorInfo` always, `BadRequest` for validation,
//! `RetryInfo` for rate limits, for storage that is unavailable and for a
//! watch that shutdown ended. Every handler and layer answers through it.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation as PbFieldViolation, StatusExt};

use crate::domain::{Error, Reason};

/// The `ErrorInfo.domain` of every Posthorn error.
pub const ERROR_DOMAIN: &str = "posthorn.dev";

/// A domain error answered over plain HTTP (the pages, the MCP endpoint's
/// key check) as the REST door answers it: the status's HTTP code and its
/// `google.rpc.Status` JSON with every detail.
pub fn http_error(error: Error) -> axum::response::Response {
    crate::gateway::ErrorBody::from_status(&to_status(error)).into_response()
}

/// When a client may try again after storage refused a write (a full disk,
/// a database that is down), or resume a watch that shutdown ended: soon,
/// since the refusal itself costs little and the cause may already be gone
/// (another process, or this one restarted, takes the watch).
const RETRY_SOON: std::time::Duration = std::time::Duration::from_secs(1);

/// Converts a domain error into the status a client sees. Internal errors
/// are logged here, once, with their cause chain, and answered without it.
pub fn to_status(error: Error) -> Status {
    let code = match &error {
        Error::Validation(_) => Code::InvalidArgument,
        Error::ApiKeyMissing | Error::ApiKeyInvalid => Code::Unauthenticated,
        Error::ScopeMissing(_) | Error::SenderNotVerified(_) => Code::PermissionDenied,
        Error::NotFound { .. } => Code::NotFound,
        Error::AlreadyExists { .. } | Error::IdempotencyKeyReused(_) => Code::AlreadyExists,
        Error::IdempotencyKeyInUse(_) => Code::Aborted,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::RateLimited { .. } | Error::QuotaExceeded { .. } | Error::PayloadTooLarge(_) => {
            Code::ResourceExhausted
        }
        Error::StorageUnavailable(_) | Error::ShuttingDown(_) => Code::Unavailable,
        Error::NotImplemented(_) => Code::Unimplemented,
        Error::Internal(_) => Code::Internal,
    };
    let reason = error.reason();
    let mut details = ErrorDetails::new();
    let mut metadata = HashMap::new();
    match &error {
        Error::Validation(violations) => {
            details.set_bad_request(
                violations
                    .iter()
                    .map(|v| PbFieldViolation::new(v.field.clone(), v.description.clone()))
                    .collect::<Vec<_>>(),
            );
        }
        Error::ScopeMissing(scope) => {
            metadata.insert("scope".to_owned(), scope.clone());
        }
        Error::StorageUnavailable(cause) => {
            tracing::warn!(error = format!("{cause:#}"), "storage unavailable");
        }
        Error::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        _ => {}
    }
    // When to try again: RetryInfo, and `retry-after` for HTTP clients.
    let retry_after = match &error {
        Error::RateLimited { retry_after, .. } | Error::QuotaExceeded { retry_after, .. } => {
            Some(*retry_after)
        }
        Error::StorageUnavailable(_) | Error::ShuttingDown(_) => Some(RETRY_SOON),
        _ => None,
    };
    if retry_after.is_some() {
        details.set_retry_info(retry_after);
    }
    details.set_error_info(reason.as_str(), ERROR_DOMAIN, metadata);
    let message = match reason {
        Reason::Internal => "internal error".to_owned(),
        _ => error.to_string(),
    };
    let mut status = Status::with_error_details(code, message, details);
    if let Some(retry_after) = retry_after {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        status
            .metadata_mut()
            .insert("retry-after", seconds.to_string().parse().expect("digits"));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldViolation;

    #[test]
    fn validation_errors_carry_every_field_violation_and_the_reason() {
        let status = to_status(Error::Validation(vec![
            FieldViolation::new("to[0]", "must be a valid email address"),
            FieldViolation::new("subject", "is required for inline sends"),
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "VALIDATION_FAILED");
        assert_eq!(details.error_info().unwrap().domain, "posthorn.dev");
        let fields: Vec<_> = details
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["to[0]", "subject"]);
    }

    #[test]
    fn internal_errors_never_show_their_cause() {
        let status = to_status(Error::Internal(anyhow::anyhow!(
            "SELECT * FROM secrets failed at /var/lib/x"
        )));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn rate_limits_carry_retry_info() {
        let status = to_status(Error::RateLimited {
            retry_after: std::time::Duration::from_secs(3),
            daily: false,
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "RATE_LIMITED");
        assert!(details.retry_info().unwrap().retry_delay.is_some());
    }
}
