//! The accept path's rules: strict addresses and request validation. The
//! use case that stores a send builds on `validate::validate`.

pub mod address;
pub mod validate;
