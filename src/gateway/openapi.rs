//! The OpenAPI 3.1 document of the REST routes, generated from the same
//! descriptors and rules as the route table, with the proto comments as
//! descriptions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use serde_json::{Map, Value as Json, json};

use super::request::is_text_kind;
use super::routes::{BodyRule, Route, RouteTable};

/// `google.api.field_behavior` values that change the schema.
const REQUIRED: i32 = 2;
const OUTPUT_ONLY: i32 = 3;

struct Builder<'a> {
    pool: &'a DescriptorPool,
    comments: &'a Comments,
    schemas: BTreeMap<String, Json>,
    pending: Vec<MessageDescriptor>,
    /// Where references point: the OpenAPI components, or a standalone
    /// schema's `$defs`.
    refs: &'static str,
}

/// Builds the document for every route of `table`.
pub fn document(table: &RouteTable, pool: &DescriptorPool, title: &str, version: &str) -> Json {
    let comments = comments(pool);
    let mut builder = Builder::new(pool, &comments, "#/components/schemas/");
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut tags: BTreeMap<String, String> = BTreeMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for route in table.routes() {
        let service = route.method.parent_service();
        tags.insert(
            service.name().to_owned(),
            builder.comment(service.parent_file().name(), service.path()),
        );
        let base = format!("{}_{}", service.name(), route.method.name());
        let count = seen.entry(base.clone()).or_default();
        *count += 1;
        let operation_id = if *count == 1 {
            base
        } else {
            format!("{base}_{count}")
        };
        let operation = builder.operation(route, operation_id);
        paths
            .entry(openapi_path(route))
            .or_default()
            .insert(route.http_method.as_str().to_ascii_lowercase(), operation);
    }
    builder.drain();
    builder
        .schemas
        .insert("google.rpc.Status".into(), status_schema());

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "REST/JSON transcoding of the gRPC contract: every route below is derived from a google.api.http rule and calls the same RPC. Bodies and responses use the proto3 JSON mapping; responses carry the proto field names and every field. Errors are google.rpc.Status objects with the HTTP status of grpc-gateway's table. Server streams are newline-delimited JSON, or Server-Sent Events with `Accept: text/event-stream`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"apiKeyAuth": []}],
        "tags": tags.into_iter().map(|(name, description)| json!({"name": name, "description": description})).collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "schemas": builder.schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API key as a bearer token: `Authorization: Bearer ph_live_…`."},
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key in the `X-API-Key` header."},
            },
        },
    })
}

/// Standalone JSON Schemas (2020-12) of the contract's messages as the REST
/// door and the MCP tools read and write them, and the comments of its
/// methods; the proto comments are read once, when it is made.
pub struct Schemas<'a> {
    pool: &'a DescriptorPool,
    comments: Comments,
}

impl<'a> Schemas<'a> {
    pub fn new(pool: &'a DescriptorPool) -> Schemas<'a> {
        Schemas {
            pool,
            comments: comments(pool),
        }
    }

    /// The schema of `message`: its fields with their comments as
    /// descriptions, required and read-only fields marked, and the messages
    /// it uses under `$defs`.
    pub fn message(&self, message: &MessageDescriptor) -> Json {
        let mut builder = Builder::new(self.pool, &self.comments, "#/$defs/");
        let mut schema = builder.message_schema(message);
        builder.drain();
        if !builder.schemas.is_empty() {
            schema["$defs"] = json!(builder.schemas);
        }
        schema
    }

    /// The leading comment of a method, as one line.
    pub fn method_comment(&self, method: &prost_reflect::MethodDescriptor) -> String {
        Builder::new(self.pool, &self.comments, "")
            .comment(method.parent_file().name(), method.path())
    }
}

/// Leading comments, by file and source path.
type Comments = HashMap<(String, Vec<i32>), String>;

/// Leading comments of every descriptor, by file and source path.
fn comments(pool: &DescriptorPool) -> Comments {
    let mut out = HashMap::new();
    for file in pool.files() {
        let Some(info) = &file.file_descriptor_proto().source_code_info else {
            continue;
        };
        for location in &info.location {
            if let Some(text) = &location.leading_comments {
                let text = text
                    .lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ")
                    .trim()
                    .to_owned();
                out.insert((file.name().to_owned(), location.path.clone()), text);
            }
        }
    }
    out
}

/// The path with each variable as `{field.path}`.
fn openapi_path(route: &Route) -> String {
    let template = &route.template;
    let mut out = String::new();
    let mut i = 0;
    while i < template.segments.len() {
        out.push('/');
        if let Some(variable) = template.variables.iter().find(|v| v.start == i) {
            out.push('{');
            out.push_str(&variable.field_path.join("."));
            out.push('}');
            i = variable.end.unwrap_or(template.segments.len());
            continue;
        }
        match &template.segments[i] {
            super::template::Segment::Literal(text) => out.push_str(text),
            super::template::Segment::Single => out.push('*'),
            super::template::Segment::Multi => out.push_str("**"),
        }
        i += 1;
    }
    if let Some(verb) = &template.verb {
        out.push(':');
        out.push_str(verb);
    }
    out
}

fn behaviors(field: &FieldDescriptor, pool: &DescriptorPool) -> Vec<i32> {
    let Some(extension) = pool.get_extension_by_name("google.api.field_behavior") else {
        return Vec::new();
    };
    let options = field.options();
    if !options.has_extension(&extension) {
        return Vec::new();
    }
    match options.get_extension(&extension).as_ref() {
        Value::List(values) => values.iter().filter_map(Value::as_enum_number).collect(),
        _ => Vec::new(),
    }
}

fn status_schema() -> Json {
    json!({
        "type": "object",
        "description": "google.rpc.Status: the error model of every route. `details` holds google.rpc.ErrorInfo (always; `reason` is the machine-readable cause), google.rpc.BadRequest (field violations of invalid requests) and google.rpc.RetryInfo (rate limits), each with its `@type`.",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
            "message": {"type": "string", "description": "A developer-facing explanation."},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"@type": {"type": "string"}},
                    "required": ["@type"],
                    "additionalProperties": true,
                },
            },
        },
        "required": ["code", "message"],
    })
}

impl<'a> Builder<'a> {
    fn new(pool: &'a DescriptorPool, comments: &'a Comments, refs: &'static str) -> Builder<'a> {
        Builder {
            pool,
            comments,
            schemas: BTreeMap::new(),
            pending: Vec::new(),
            refs,
        }
    }

    fn comment(&self, file: &str, path: &[i32]) -> String {
        self.comments
            .get(&(file.to_owned(), path.to_vec()))
            .cloned()
            .unwrap_or_default()
    }

    fn field_comment(&self, field: &FieldDescriptor) -> String {
        self.comment(field.parent_file().name(), field.path())
    }

    fn operation(&mut self, route: &Route, operation_id: String) -> Json {
        let method = &route.method;
        let description = self.comment(method.parent_file().name(), method.path());
        let summary = description
            .split_inclusive(". ")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let mut parameters = Vec::new();
        for (fields, variable) in &route.variables {
            let leaf = fields.last().expect("a field path has a field");
            let mut schema = self.kind_schema(&leaf.kind());
            if variable.end.is_some_and(|end| end - variable.start > 1) || variable.end.is_none() {
                schema = json!({"type": "string"});
            }
            parameters.push(json!({
                "name": variable.field_path.join("."),
                "in": "path",
                "required": true,
                "description": self.field_comment(leaf),
                "schema": schema,
            }));
        }
        if matches!(route.body, BodyRule::None | BodyRule::Field(_)) {
            let mut visited = BTreeSet::new();
            self.query_parameters(
                route,
                &method.input(),
                &mut Vec::new(),
                &mut visited,
                &mut parameters,
            );
        }
        if let Some(resume) = &route.resume {
            parameters.push(json!({
                "name": "Last-Event-ID",
                "in": "header",
                "required": false,
                "description": format!(
                    "Server-Sent Events: the `id` of the last event received, which is its cursor. The stream resumes after it, or after `{}` when that is later.",
                    resume.after.name()
                ),
                "schema": {"type": "string", "pattern": "^[0-9]{0,19}$"},
            }));
        }
        let mut operation = json!({
            "operationId": operation_id,
            "summary": summary,
            "description": description,
            "tags": [method.parent_service().name()],
            "parameters": parameters,
            "responses": {
                "200": self.success(route),
                "default": {
                    "description": "An error, as a google.rpc.Status.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}},
                },
            },
        });
        let body = match &route.body {
            BodyRule::None => None,
            BodyRule::All => Some(self.body_schema(route)),
            BodyRule::Field(field) => Some(self.field_schema(field)),
        };
        if let Some(schema) = body {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": schema}},
            });
        }
        operation
    }

    fn success(&mut self, route: &Route) -> Json {
        let schema = match &route.response_body {
            Some(field) => self.field_schema(field),
            None => self.message_ref(&route.method.output()),
        };
        if route.method.is_server_streaming() {
            let ids = match route.resume {
                Some(_) => " with the message's cursor as its `id`",
                None => "",
            };
            json!({
                "description": format!(
                    "A stream: one JSON message per line (application/x-ndjson), or one `data:` event per message (text/event-stream){ids} and a `: keep-alive` comment when the stream is quiet. A stream that fails ends with a final line `{{\"error\": <google.rpc.Status>}}` (an `error` event over SSE)."
                ),
                "content": {
                    "application/x-ndjson": {"schema": schema},
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            })
        } else {
            json!({
                "description": "The RPC's response.",
                "content": {"application/json": {"schema": schema}},
            })
        }
    }

    /// The body of a `body: "*"` rule: the request message less the fields
    /// that the path carries.
    fn body_schema(&mut self, route: &Route) -> Json {
        let input = route.method.input();
        let from_path: BTreeSet<String> = route
            .variables
            .iter()
            .filter(|(fields, _)| fields.len() == 1)
            .map(|(fields, _)| fields[0].name().to_owned())
            .collect();
        if from_path.is_empty() {
            return self.message_ref(&input);
        }
        let mut schema = self.message_schema(&input);
        if let Some(properties) = schema["properties"].as_object_mut() {
            properties.retain(|name, _| !from_path.contains(name));
        }
        if let Some(required) = schema["required"].as_array_mut() {
            required.retain(|name| !name.as_str().is_some_and(|n| from_path.contains(n)));
        }
        schema
    }

    fn query_parameters(
        &mut self,
        route: &Route,
        message: &MessageDescriptor,
        prefix: &mut Vec<FieldDescriptor>,
        visited: &mut BTreeSet<String>,
        out: &mut Vec<Json>,
    ) {
        if !visited.insert(message.full_name().to_owned()) {
            return;
        }
        for field in message.fields() {
            prefix.push(field.clone());
            let name = prefix
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(".");
            let output_only = behaviors(&field, self.pool).contains(&OUTPUT_ONLY);
            if route.binds(prefix) || field.is_map() || output_only {
                // Set by the path or the body, or not settable.
            } else if is_text_kind(&field.kind()) {
                let mut parameter = json!({
                    "name": name,
                    "in": "query",
                    "description": self.field_comment(&field),
                    "schema": self.field_schema(&field),
                });
                if field.is_list() {
                    parameter["style"] = json!("form");
                    parameter["explode"] = json!(true);
                }
                out.push(parameter);
            } else if let Kind::Message(inner) = field.kind()
                && !field.is_list()
                && prefix.len() < 4
            {
                self.query_parameters(route, &inner, prefix, visited, out);
            }
            prefix.pop();
        }
        visited.remove(message.full_name());
    }

    fn message_ref(&mut self, message: &MessageDescriptor) -> Json {
        if let Some(schema) = well_known(message) {
            return schema;
        }
        let name = message.full_name().to_owned();
        if !self.schemas.contains_key(&name) {
            self.schemas.insert(name.clone(), Json::Null);
            self.pending.push(message.clone());
        }
        json!({"$ref": format!("{}{name}", self.refs)})
    }

    fn drain(&mut self) {
        while let Some(message) = self.pending.pop() {
            let schema = self.message_schema(&message);
            self.schemas.insert(message.full_name().to_owned(), schema);
        }
    }

    fn message_schema(&mut self, message: &MessageDescriptor) -> Json {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            let behaviors = behaviors(&field, self.pool);
            if behaviors.contains(&REQUIRED) {
                required.push(json!(field.name()));
            }
            let mut schema = self.field_schema(&field);
            if behaviors.contains(&OUTPUT_ONLY) {
                schema = with(schema, "readOnly", json!(true));
            }
            properties.insert(field.name().to_owned(), schema);
        }
        let mut schema = json!({
            "type": "object",
            "description": self.comment(message.parent_file().name(), message.path()),
            "properties": properties,
            "additionalProperties": false,
        });
        if !required.is_empty() {
            schema["required"] = Json::Array(required);
        }
        schema
    }

    fn field_schema(&mut self, field: &FieldDescriptor) -> Json {
        let description = self.field_comment(field);
        let schema = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("map fields are entry messages")
            };
            let value = entry.map_entry_value_field();
            json!({"type": "object", "additionalProperties": self.kind_schema(&value.kind())})
        } else if field.is_list() {
            json!({"type": "array", "items": self.kind_schema(&field.kind())})
        } else {
            self.kind_schema(&field.kind())
        };
        match schema.get("description").and_then(Json::as_str) {
            _ if description.is_empty() => schema,
            // An enum's own description lists its values: keep it after the field's.
            Some(own) => {
                let merged = format!("{description} {own}");
                with(schema, "description", json!(merged))
            }
            None => with(schema, "description", json!(description)),
        }
    }

    fn kind_schema(&mut self, kind: &Kind) -> Json {
        match kind {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"})
            }
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Enum(enumeration) => self.enum_schema(enumeration),
            Kind::Message(message) => self.message_ref(message),
        }
    }

    /// An enum by its REST names (`super::enums`); the description lists
    /// each value with its comment.
    fn enum_schema(&self, enumeration: &EnumDescriptor) -> Json {
        let names = super::enums::short_names(enumeration);
        let values: Vec<Json> = names.iter().map(|(_, short)| json!(short)).collect();
        let described: Vec<String> = enumeration
            .values()
            .zip(&names)
            .map(|(v, (_, short))| {
                let comment = self.comment(v.parent_file().name(), v.path());
                format!("`{short}`: {comment}")
            })
            .collect();
        json!({
            "type": "string",
            "enum": values,
            "description": format!(
                "{} Values: {} Requests may also give the proto name (`{}`) or the number.",
                self.comment(enumeration.parent_file().name(), enumeration.path()),
                described.join(" "),
                names.first().map(|(full, _)| full.as_str()).unwrap_or_default(),
            ),
        })
    }
}

fn with(mut schema: Json, key: &str, value: Json) -> Json {
    if schema.get("$ref").is_some() {
        // Siblings of `$ref` are allowed in 3.1, but wrap for older tools.
        return json!({"allOf": [schema], key: value});
    }
    schema[key] = value;
    schema
}

/// Schemas of the well-known types whose JSON form is not an object of
/// their fields.
fn well_known(message: &MessageDescriptor) -> Option<Json> {
    let schema = match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"})
        }
        "google.protobuf.FieldMask" => json!({"type": "string"}),
        "google.protobuf.Struct" => json!({"type": "object", "additionalProperties": true}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({"type": "array"}),
        "google.protobuf.Empty" => json!({"type": "object", "additionalProperties": false}),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": {"@type": {"type": "string"}},
            "required": ["@type"],
            "additionalProperties": true,
        }),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => {
            json!({"type": ["number", "null"]})
        }
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => {
            json!({"type": ["integer", "null"]})
        }
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => {
            json!({"type": ["string", "null"], "pattern": "^-?[0-9]+$"})
        }
        "google.protobuf.BoolValue" => json!({"type": ["boolean", "null"]}),
        "google.protobuf.StringValue" => json!({"type": ["string", "null"]}),
        "google.protobuf.BytesValue" => json!({"type": ["string", "null"]}),
        _ => return None,
    };
    Some(schema)
}
