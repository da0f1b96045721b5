//! Page sizes of the list RPCs: 0 asks for the default, anything else must
//! be within 1 and the RPC's maximum.

use super::FieldViolation;

/// The validated page size, or the violation naming `page_size`.
pub fn page_size(requested: i32, default: u32, max: u32) -> Result<u64, FieldViolation> {
    match requested {
        0 => Ok(u64::from(default)),
        n if n > 0 && n as u32 <= max => Ok(n as u64),
        _ => Err(FieldViolation::new(
            "page_size",
            format!("must be between 1 and {max} (0 means {default})"),
        )),
    }
}
