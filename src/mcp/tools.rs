//! The tools: each one RPC of the contract, with the RPC's request message
//! as its input schema, the response message as its output schema, the
//! RPC's comment as its description and the RPC's scope as the scope it
//! needs. Only the name, the RPC and a line for agents are written here.

use std::sync::Arc;

use prost_reflect::MethodDescriptor;
use rmcp::model::{JsonObject, Tool as ToolDescriptor, ToolAnnotations};
use serde_json::{Value as Json, json};

use crate::domain::Scope;
use crate::gateway::openapi::Schemas;

/// `send_email`'s own arguments, beside the SendEmailRequest fields.
pub const WAIT_FOR: &str = "wait_for";
pub const WAIT_SECONDS: &str = "wait_seconds";
/// How long `send_email` waits when `wait_seconds` is not given, and at most.
pub const DEFAULT_WAIT_SECONDS: u64 = 30;
pub const MAX_WAIT_SECONDS: u64 = 120;

struct Spec {
    name: &'static str,
    title: &'static str,
    /// The RPC's full name.
    method: &'static str,
    /// Said to agents after the RPC's own comment.
    hint: &'static str,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "list_templates",
        title: "List email templates",
        method: "posthorn.v1.TemplatesService.ListTemplates",
        hint: "Each template lists the variables it reads; send one with send_email's `template` and `variables`. Categories include auth, billing, account, notifications.",
    },
    Spec {
        name: "get_template",
        title: "Get an email template",
        method: "posthorn.v1.TemplatesService.GetTemplate",
        hint: "",
    },
    Spec {
        name: "render_template",
        title: "Preview a template",
        method: "posthorn.v1.TemplatesService.RenderTemplate",
        hint: "A dry run for checking variables and wording before send_email.",
    },
    Spec {
        name: "send_email",
        title: "Send an email",
        method: "posthorn.v1.SendService.SendEmail",
        hint: "Give `template` and `variables`, or `subject` with `html` and/or `text`. With `wait_for` (\"sent\" or \"delivered\") the call reports progress as the message moves and returns its status once it gets there, or when `wait_seconds` run out. Sends are marked with metadata source=mcp; test-mode keys capture mail instead of delivering it.",
    },
    Spec {
        name: "get_email_status",
        title: "Get an email's status and timeline",
        method: "posthorn.v1.MessagesService.GetMessage",
        hint: "",
    },
    Spec {
        name: "list_messages",
        title: "List sent emails",
        method: "posthorn.v1.MessagesService.ListMessages",
        hint: "",
    },
    Spec {
        name: "cancel_message",
        title: "Cancel an email",
        method: "posthorn.v1.MessagesService.CancelMessage",
        hint: "",
    },
];

/// One tool, ready to list and to call.
pub struct Tool {
    pub name: &'static str,
    pub method: MethodDescriptor,
    /// The scope of the RPC: a key without it does not see the tool.
    pub scope: Scope,
    /// Whether the tool changes anything (left out in read-only mode).
    pub writes: bool,
    /// Whether it is `send_email`, which can wait for delivery.
    pub sends: bool,
    pub descriptor: ToolDescriptor,
}

/// The tools, all of them or only those that read.
pub fn catalog(read_only: bool) -> Vec<Tool> {
    let schemas = Schemas::new(crate::proto::descriptor_pool());
    let scopes = crate::proto::required_scopes();
    SPECS
        .iter()
        .map(|spec| {
            let method = crate::proto::method(spec.method)
                .unwrap_or_else(|| panic!("the contract has no RPC {}", spec.method));
            let scope: Scope = scopes
                .get(&crate::proto::grpc_path(&method))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{} names no valid scope", spec.method));
            let writes = !scope.as_str().ends_with(":read");
            let sends = spec.name == "send_email";
            let descriptor = describe(&schemas, spec, &method, writes, sends);
            Tool {
                name: spec.name,
                method,
                scope,
                writes,
                sends,
                descriptor,
            }
        })
        .filter(|tool| !(read_only && tool.writes))
        .collect()
}

fn describe(
    schemas: &Schemas,
    spec: &Spec,
    method: &MethodDescriptor,
    writes: bool,
    sends: bool,
) -> ToolDescriptor {
    let mut input = schemas.message(&method.input());
    if sends {
        let properties = input["properties"]
            .as_object_mut()
            .expect("a message schema has properties");
        properties.insert(
            WAIT_FOR.into(),
            json!({
                "type": "string",
                "enum": ["sent", "delivered"],
                "description": "Wait until the message is sent to the relay or delivered (or has bounced, failed or been cancelled), reporting each event as progress. Optional: without it the call returns as soon as the message is accepted.",
            }),
        );
        properties.insert(
            WAIT_SECONDS.into(),
            json!({
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_WAIT_SECONDS,
                "description": format!("How long to wait with wait_for, in seconds; default {DEFAULT_WAIT_SECONDS}. When it runs out the current status is returned."),
            }),
        );
    }
    let output = schemas.message(&method.output());
    let comment = schemas.method_comment(method);
    let description = if spec.hint.is_empty() {
        comment
    } else {
        format!("{comment} {}", spec.hint)
    };
    let annotations = ToolAnnotations::with_title(spec.title)
        .read_only(!writes)
        .destructive(spec.name == "cancel_message")
        .idempotent(!sends)
        .open_world(sends);
    ToolDescriptor::new(spec.name, description, Arc::new(object(input)))
        .with_title(spec.title)
        .with_raw_output_schema(Arc::new(object(output)))
        .with_annotations(annotations)
}

fn object(json: Json) -> JsonObject {
    match json {
        Json::Object(map) => map,
        _ => unreachable!("a message schema is an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool<'a>(tools: &'a [Tool], name: &str) -> &'a Tool {
        tools.iter().find(|t| t.name == name).expect("listed")
    }

    #[test]
    fn each_tool_takes_its_scope_from_the_contract() {
        let tools = catalog(false);
        let names: Vec<_> = tools.iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "list_templates",
                "get_template",
                "render_template",
                "send_email",
                "get_email_status",
                "list_messages",
                "cancel_message"
            ]
        );
        assert_eq!(tool(&tools, "send_email").scope, Scope::EmailSend);
        assert_eq!(tool(&tools, "get_email_status").scope, Scope::EmailRead);
        assert_eq!(tool(&tools, "list_messages").scope, Scope::EmailRead);
        assert_eq!(tool(&tools, "list_templates").scope, Scope::TemplatesRead);
        assert_eq!(tool(&tools, "cancel_message").scope, Scope::EmailSend);
    }

    #[test]
    fn read_only_mode_leaves_out_every_tool_that_writes() {
        let names: Vec<_> = catalog(true).iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "list_templates",
                "get_template",
                "render_template",
                "get_email_status",
                "list_messages"
            ]
        );
    }

    #[test]
    fn input_schemas_are_the_request_messages_with_their_comments() {
        let tools = catalog(false);
        let send = &tool(&tools, "send_email").descriptor.input_schema;
        assert_eq!(send["type"], "object");
        assert_eq!(send["additionalProperties"], false);
        assert_eq!(send["required"], json!(["from_email", "to"]));
        assert!(
            send["properties"]["from_email"]["description"]
                .as_str()
                .unwrap()
                .contains("Must be a verified identity of the account")
        );
        assert_eq!(send["properties"]["to"]["type"], "array");
        assert_eq!(
            send["properties"]["variables"]["type"], "object",
            "a Struct is a JSON object"
        );
        assert_eq!(
            send["properties"][WAIT_FOR]["enum"],
            json!(["sent", "delivered"])
        );
        // Attachments are a message of their own, under $defs.
        let attachment = send["properties"]["attachments"]["items"]["$ref"]
            .as_str()
            .unwrap();
        let name = attachment.strip_prefix("#/$defs/").unwrap();
        assert!(send["$defs"][name]["properties"]["filename"].is_object());

        let list = &tool(&tools, "list_messages").descriptor.input_schema;
        let status = &list["properties"]["status"];
        assert!(
            status["enum"]
                .as_array()
                .unwrap()
                .contains(&json!("delivered")),
            "enums take the REST door's short names: {status}"
        );
        assert_eq!(
            tool(&tools, "get_email_status").descriptor.input_schema["required"],
            json!(["id"])
        );
    }

    #[test]
    fn descriptions_are_the_rpc_comments() {
        let tools = catalog(false);
        let send = tool(&tools, "send_email").descriptor.description.clone();
        assert!(send.unwrap().starts_with("Accepts one email for delivery"));
        let status = tool(&tools, "get_email_status")
            .descriptor
            .description
            .clone();
        assert!(status.unwrap().starts_with(
            "Returns one message with its recipients and its full chronological event timeline"
        ));
    }

    #[test]
    fn output_schemas_are_the_response_messages() {
        let tools = catalog(false);
        let output = tool(&tools, "get_email_status")
            .descriptor
            .output_schema
            .clone()
            .unwrap();
        // A described reference is wrapped: {"allOf": [{"$ref": …}], "description": …}.
        let message = &output["properties"]["message"];
        assert!(message["description"].is_string());
        let name = message["allOf"][0]["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .unwrap();
        let events = &output["$defs"][name]["properties"]["events"];
        assert_eq!(events["type"], "array");
        assert_eq!(
            tool(&tools, "send_email")
                .descriptor
                .output_schema
                .clone()
                .unwrap()["properties"]["id"]["type"],
            "string"
        );
    }
}
