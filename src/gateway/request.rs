//! Turns a REST request (path variables, query string, JSON body) into the
//! RPC's request message under the proto3 JSON mapping, with errors that
//! name the field at fault.

use std::collections::BTreeMap;

use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    Value,
};
use serde_json::Value as Json;

use super::routes::{BodyRule, Resume, Route, resolve_path};

/// Why a request could not be mapped: the field (dotted path, empty for
/// the body as a whole) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    /// The field at fault, as a dotted path.
    pub field: String,
    /// What is wrong, for a person.
    pub description: String,
}

impl MappingError {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> MappingError {
        MappingError {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The one-line message of the 400 answer.
    pub fn message(&self) -> String {
        if self.field.is_empty() {
            self.description.clone()
        } else {
            format!("field `{}`: {}", self.field, self.description)
        }
    }
}

const WRAPPERS: &[&str] = &[
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
];

const TEXT_MESSAGES: &[&str] = &[
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
];

/// Whether a kind can be written as one piece of text (a path segment or
/// a query value): scalars, enums, and the well-known types whose JSON form
/// is a scalar.
pub fn is_text_kind(kind: &Kind) -> bool {
    match kind {
        Kind::Message(message) => {
            let name = message.full_name();
            TEXT_MESSAGES.contains(&name) || WRAPPERS.contains(&name)
        }
        _ => true,
    }
}

/// Whether a field holds one value that text can express.
pub fn is_scalar_like(field: &FieldDescriptor) -> bool {
    !field.is_list() && !field.is_map() && is_text_kind(&field.kind())
}

/// Writes `text` as the JSON value the proto3 JSON mapping expects for
/// `kind`, so that the one JSON decoder applies the same rules (enums by
/// name or number, 64-bit integers, timestamps, durations) to path and
/// query values as to bodies.
fn text_to_json(kind: &Kind, text: &str) -> Json {
    match kind {
        Kind::Bool => match text {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            _ => Json::String(text.to_owned()),
        },
        Kind::String | Kind::Bytes => Json::String(text.to_owned()),
        Kind::Message(message) if WRAPPERS.contains(&message.full_name()) => {
            let inner = message
                .get_field_by_name("value")
                .expect("wrapper types have a value field");
            text_to_json(&inner.kind(), text)
        }
        // The JSON form of a FieldMask is lowerCamelCase; in a URL people
        // write the proto names, so accept both.
        Kind::Message(message) if message.full_name() == "google.protobuf.FieldMask" => {
            Json::String(
                text.split(',')
                    .map(|path| {
                        path.split('.')
                            .map(lower_camel)
                            .collect::<Vec<_>>()
                            .join(".")
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            )
        }
        Kind::Message(_) => Json::String(text.to_owned()),
        Kind::Enum(enumeration) => match super::enums::lengthen_name(enumeration, text) {
            Some(full) => Json::String(full),
            None => number_or_string(text),
        },
        _ => number_or_string(text),
    }
}

/// A number when `text` is one, else the text (which the decoder then
/// judges for the field's kind).
fn number_or_string(text: &str) -> Json {
    if let Ok(n) = text.parse::<i64>() {
        Json::from(n)
    } else if let Ok(n) = text.parse::<u64>() {
        Json::from(n)
    } else if let Some(n) = text
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .and_then(serde_json::Number::from_f64)
    {
        Json::Number(n)
    } else {
        Json::String(text.to_owned())
    }
}

fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn options() -> DeserializeOptions {
    DeserializeOptions::new().deny_unknown_fields(true)
}

/// Decodes JSON `bytes` as a `descriptor` message, naming the field at fault
/// (prefixed with `prefix`) and the position of syntax errors.
fn decode_json(
    descriptor: MessageDescriptor,
    bytes: &[u8],
    prefix: &str,
) -> Result<DynamicMessage, MappingError> {
    // The fast path decodes without tracking where it is; only a request
    // that fails is decoded again, to name the field at fault.
    let mut json = serde_json::Deserializer::from_slice(bytes);
    if let Ok(message) =
        DynamicMessage::deserialize_with_options(descriptor.clone(), &mut json, &options())
            .and_then(|message| json.end().map(|()| message))
    {
        return Ok(message);
    }
    // Enum values may be given by their short REST names: spell them out
    // and decode again (the spelled-out body changes no further).
    if let Ok(mut json) = serde_json::from_slice::<Json>(bytes)
        && super::enums::lengthen(&mut json, &descriptor)
        && let Ok(spelled) = serde_json::to_vec(&json)
    {
        return decode_json(descriptor, &spelled, prefix);
    }
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let mut track = serde_path_to_error::Track::new();
    let decoded = DynamicMessage::deserialize_with_options(
        descriptor.clone(),
        serde_path_to_error::Deserializer::new(&mut json, &mut track),
        &options(),
    )
    .and_then(|message| json.end().map(|()| message));
    decoded.map_err(|error| {
        use serde_json::error::Category;
        match error.classify() {
            Category::Syntax | Category::Eof | Category::Io => MappingError::new(
                String::new(),
                format!("the request body is not valid JSON: {error}"),
            ),
            Category::Data => {
                let path = track.path().to_string();
                let mut path = if path == "." { String::new() } else { path };
                let mut description = error.to_string();
                // An unknown key is not part of the tracked path: name it.
                if let Some(rest) = description.strip_prefix("unrecognized field name '")
                    && let Some((name, position)) = rest.split_once('\'')
                {
                    path = if path.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{path}.{name}")
                    };
                    description =
                        format!("unknown field: the request has no field of this name{position}");
                } else if let Some(rule) = kind_at(&descriptor, &path).as_ref().and_then(value_rule)
                {
                    // The decoder's own words ("float value out of range",
                    // "unrecognized enum value") name no rule.
                    description = format!("{rule} ({description})");
                }
                let field = match (prefix.is_empty(), path.is_empty()) {
                    (true, _) => path,
                    (false, true) => prefix.to_owned(),
                    (false, false) => format!("{prefix}.{path}"),
                };
                MappingError::new(field, description)
            }
        }
    })
}

/// The kind of the value at `path` (as the decoder's path tracker writes
/// it: `items[2].count`, `labels.key`); `None` for a path that names no
/// field, and for a repeated or map field as a whole (its error is about
/// the list or the map).
fn kind_at(descriptor: &MessageDescriptor, path: &str) -> Option<Kind> {
    let mut message = descriptor.clone();
    let mut segments = path.split('.').peekable();
    let mut kind = None;
    while let Some(segment) = segments.next() {
        let (name, indexed) = match segment.split_once('[') {
            Some((name, _)) => (name, true),
            None => (segment, false),
        };
        let field = message
            .get_field_by_json_name(name)
            .or_else(|| message.get_field_by_name(name))?;
        let value = if field.is_map() {
            // The next segment is the key; what follows is about the value.
            segments.next()?;
            match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                _ => return None,
            }
        } else if field.is_list() && !indexed {
            return None;
        } else {
            field.kind()
        };
        if segments.peek().is_none() {
            kind = Some(value);
        } else {
            let Kind::Message(next) = value else {
                return None;
            };
            message = next;
        }
    }
    kind
}

/// The rule a value of `kind` breaks when it does not decode, for numbers
/// (and their wrappers) and enums; `None` for other kinds, whose decoder
/// errors say what was expected.
fn value_rule(kind: &Kind) -> Option<String> {
    let kind = match kind {
        Kind::Message(wrapper) if WRAPPERS.contains(&wrapper.full_name()) => {
            wrapper.get_field_by_name("value")?.kind()
        }
        kind => kind.clone(),
    };
    if let Kind::Enum(enumeration) = &kind {
        // The value numbered 0 means "not set"; it is not offered.
        let names: Vec<String> = super::enums::short_names(enumeration)
            .into_iter()
            .zip(enumeration.values())
            .filter(|(_, value)| value.number() != 0)
            .map(|((_, short), _)| short)
            .collect();
        return Some(format!("must be one of {}", names.join(", ")));
    }
    Some(
        match kind {
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                "must be a whole number from -2147483648 to 2147483647"
            }
            Kind::Uint32 | Kind::Fixed32 => "must be a whole number from 0 to 4294967295",
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                "must be a whole number from -9223372036854775808 to 9223372036854775807"
            }
            Kind::Uint64 | Kind::Fixed64 => "must be a whole number from 0 to 18446744073709551615",
            Kind::Float | Kind::Double => "must be a number",
            _ => return None,
        }
        .to_owned(),
    )
}

/// Decodes a JSON object as a `descriptor` message under the REST door's
/// rules (proto3 JSON, enum values by their short names too, unknown
/// fields refused), naming the field at fault.
pub fn from_json(
    descriptor: MessageDescriptor,
    json: &Json,
) -> Result<DynamicMessage, MappingError> {
    let bytes = serde_json::to_vec(json)
        .map_err(|e| MappingError::new(String::new(), format!("not JSON: {e}")))?;
    decode_json(descriptor, &bytes, "")
}

/// Sets the field at `path` of `message` from text values (one, or several
/// for a repeated field); `name` is how the request named it.
fn set_from_text(
    message: &mut DynamicMessage,
    path: &[FieldDescriptor],
    values: &[String],
    name: &str,
) -> Result<(), MappingError> {
    let (leaf, parents) = path.split_last().expect("a field path has a field");
    let mut target = message;
    for field in parents {
        target = match target.get_field_mut(field) {
            Value::Message(inner) => inner,
            _ => unreachable!("resolve_path only walks through singular messages"),
        };
    }
    let kind = leaf.kind();
    let json = if leaf.is_list() {
        Json::Array(values.iter().map(|v| text_to_json(&kind, v)).collect())
    } else {
        match values {
            [one] => text_to_json(&kind, one),
            _ => {
                return Err(MappingError::new(
                    name,
                    "given more than once, but the field is not repeated",
                ));
            }
        }
    };
    let mut holder = serde_json::Map::new();
    holder.insert(leaf.name().to_owned(), json);
    let parsed = DynamicMessage::deserialize_with_options(
        target.descriptor(),
        Json::Object(holder),
        &options(),
    )
    .map_err(|e| match value_rule(&kind) {
        Some(rule) => MappingError::new(name, format!("{rule} ({e})")),
        None => MappingError::new(name, e.to_string()),
    })?;
    target.set_field(leaf, parsed.get_field(leaf).into_owned());
    Ok(())
}

/// Resumes a stream after the `Last-Event-ID` that a reconnecting
/// Server-Sent Events client sends: the request's cursor field becomes that
/// id when it is later than the one the request gave (such a client
/// reconnects with the URL it first used). An empty header means no event
/// was seen.
pub fn resume_after_last_event(
    resume: &Resume,
    headers: &http::HeaderMap,
    message: &mut DynamicMessage,
) -> Result<(), MappingError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let text = text.trim();
    if text.is_empty() {
        return Ok(());
    }
    let id = text
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            MappingError::new(
                resume.after.name(),
                format!(
                    "the Last-Event-ID header `{text}` must be a whole number from 0 to {}",
                    i64::MAX
                ),
            )
        })?;
    let given = message.get_field(&resume.after).as_i64().unwrap_or(0);
    if id > given {
        message.set_field(&resume.after, Value::I64(id));
    }
    Ok(())
}

/// Builds the request message of `route` from the captured (raw) path
/// variable values, the query string and the (decoded) body.
pub fn build(
    route: &Route,
    captured: &[String],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, MappingError> {
    let input = route.method.input();
    let body_is_empty = body.iter().all(u8::is_ascii_whitespace);
    let mut message = match &route.body {
        BodyRule::None => DynamicMessage::new(input.clone()),
        BodyRule::All if body_is_empty => DynamicMessage::new(input.clone()),
        BodyRule::All => decode_json(input.clone(), body, "")?,
        BodyRule::Field(_) if body_is_empty => DynamicMessage::new(input.clone()),
        BodyRule::Field(field) => {
            let mut message = DynamicMessage::new(input.clone());
            match field.kind() {
                Kind::Message(inner) if !field.is_list() && !field.is_map() => {
                    let value = decode_json(inner, body, field.name())?;
                    message.set_field(field, Value::Message(value));
                }
                _ => {
                    // A repeated or scalar body: decode it as the one field
                    // of the request.
                    let mut wrapped = format!("{{\"{}\":", field.name()).into_bytes();
                    wrapped.extend_from_slice(body);
                    wrapped.push(b'}');
                    let decoded = decode_json(input.clone(), &wrapped, "")?;
                    message.set_field(field, decoded.get_field(field).into_owned());
                }
            }
            message
        }
    };

    for ((fields, variable), raw) in route.variables.iter().zip(captured) {
        let name = variable.field_path.join(".");
        let text = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| {
                MappingError::new(
                    &name,
                    "the path segment is not valid UTF-8 once percent-decoded",
                )
            })?;
        set_from_text(&mut message, fields, &[text.into_owned()], &name)?;
    }

    if let Some(query) = query.filter(|q| !q.is_empty()) {
        let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            grouped
                .entry(key.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        for (key, values) in grouped {
            let path: Vec<String> = key.split('.').map(str::to_owned).collect();
            let fields = resolve_path(&input, &path).map_err(|reason| {
                MappingError::new(
                    &key,
                    format!("the query parameter names no request field ({reason})"),
                )
            })?;
            if route.binds(&fields) {
                return Err(MappingError::new(
                    &key,
                    "the query parameter sets a field that the path or the body already carries",
                ));
            }
            let leaf = fields.last().expect("a field path has a field");
            if leaf.is_map() || !is_text_kind(&leaf.kind()) {
                return Err(MappingError::new(
                    &key,
                    "this field cannot be set from the query string (name its sub-fields, e.g. `filter.status=…`)",
                ));
            }
            set_from_text(&mut message, &fields, &values, &key)?;
        }
    }
    Ok(message)
}
