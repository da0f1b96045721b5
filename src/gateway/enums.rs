//! Enum values in REST JSON: short, lower-case names.
//!
//! Proto enum values carry their type's name as a prefix
//! (`MESSAGE_STATUS_QUEUED`), which gRPC stubs need and people reading JSON
//! do not. Over REST a value is written without that prefix and in lower
//! case (`"queued"`), as the API contract shows it; requests may use the
//! short name, the full name or the number.

use prost_reflect::{EnumDescriptor, Kind, MessageDescriptor};
use serde_json::Value as Json;

/// `MessageStatus` → `MESSAGE_STATUS_`.
fn prefix(enumeration: &EnumDescriptor) -> String {
    let mut out = String::new();
    for (i, c) in enumeration.name().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out.push('_');
    out
}

/// The length of the type prefix the REST names drop: `None` when some
/// value lacks it (short names could then collide, so full names are kept).
fn prefix_len(enumeration: &EnumDescriptor) -> Option<usize> {
    let prefix = prefix(enumeration);
    enumeration
        .values()
        .all(|v| v.name().len() > prefix.len() && v.name().starts_with(&prefix))
        .then_some(prefix.len())
}

/// The REST name of a value's proto name, given the type's `prefix_len`.
fn short(full: &str, prefix_len: Option<usize>) -> String {
    match prefix_len {
        Some(n) => full[n..].to_ascii_lowercase(),
        None => full.to_owned(),
    }
}

/// The proto and REST names of every value of `enumeration`, in
/// declaration order.
pub fn short_names(enumeration: &EnumDescriptor) -> Vec<(String, String)> {
    let n = prefix_len(enumeration);
    enumeration
        .values()
        .map(|v| (v.name().to_owned(), short(v.name(), n)))
        .collect()
}

/// The REST name of the value named `full`; `None` when it names no value
/// or the type keeps full names.
pub fn shorten_name(enumeration: &EnumDescriptor, full: &str) -> Option<String> {
    enumeration.get_value_by_name(full)?;
    prefix_len(enumeration).map(|n| short(full, Some(n)))
}

/// The proto name for a short name given in a request (case-insensitive);
/// `None` when `text` is not a short name (it may be a full name or a
/// number, which the JSON decoder takes as they are).
pub fn lengthen_name(enumeration: &EnumDescriptor, text: &str) -> Option<String> {
    if enumeration.get_value_by_name(text).is_some() {
        return None;
    }
    let n = prefix_len(enumeration)?;
    enumeration
        .values()
        .find(|v| short(v.name(), Some(n)).eq_ignore_ascii_case(text))
        .map(|v| v.name().to_owned())
}

/// Messages whose JSON form is not an object of their fields.
fn is_special(message: &MessageDescriptor) -> bool {
    message.full_name().starts_with("google.protobuf.")
}

/// Rewrites the enum values of `json`, a proto3 JSON object of `message`
/// written with proto field names, with `rename`.
fn walk(
    json: &mut Json,
    message: &MessageDescriptor,
    rename: &dyn Fn(&EnumDescriptor, &str) -> Option<String>,
) {
    if is_special(message) {
        return;
    }
    let Json::Object(object) = json else { return };
    for (key, value) in object.iter_mut() {
        let field = message
            .get_field_by_name(key)
            .or_else(|| message.get_field_by_json_name(key));
        let Some(field) = field else { continue };
        let kind = if field.is_map() {
            match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                _ => continue,
            }
        } else {
            field.kind()
        };
        let mut each = |value: &mut Json| match &kind {
            Kind::Enum(enumeration) => {
                if let Json::String(text) = value
                    && let Some(renamed) = rename(enumeration, text)
                {
                    *text = renamed;
                }
            }
            Kind::Message(inner) => walk(value, inner, rename),
            _ => {}
        };
        match value {
            Json::Array(items) if field.is_list() => items.iter_mut().for_each(&mut each),
            Json::Object(entries) if field.is_map() => entries.values_mut().for_each(&mut each),
            other if !field.is_list() && !field.is_map() => each(other),
            _ => {}
        }
    }
}

/// Response JSON: full enum names → short names.
pub fn shorten(json: &mut Json, message: &MessageDescriptor) {
    walk(json, message, &|enumeration, text| {
        shorten_name(enumeration, text)
    });
}

/// Request JSON: short enum names → full names. Returns whether anything
/// changed.
pub fn lengthen(json: &mut Json, message: &MessageDescriptor) -> bool {
    let changed = std::cell::Cell::new(false);
    walk(json, message, &|enumeration, text| {
        let full = lengthen_name(enumeration, text);
        if full.is_some() {
            changed.set(true);
        }
        full
    });
    changed.get()
}
