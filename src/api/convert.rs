//! Conversions between protobuf well-known types and domain values.

use chrono::{DateTime, Utc};
use tonic::Status;

use super::status::to_status;
use crate::domain::Error;

/// A UTC time as a protobuf Timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf Timestamp as a UTC time; INVALID_ARGUMENT naming `field` when
/// it is out of range.
pub fn from_timestamp(t: &prost_types::Timestamp, field: &str) -> Result<DateTime<Utc>, Status> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| to_status(Error::invalid(field, "not a valid timestamp")))
}
