//! The generated protobuf and tonic code, and the contract's descriptor set
//! with the facts derived from it at run time (HTTP rules, required scopes).

use std::collections::HashMap;
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, MethodDescriptor, Value};

#[allow(clippy::all, missing_docs)]
pub mod posthorn {
    pub mod v1 {
        tonic::include_proto!("posthorn.v1");
    }
}

#[allow(clippy::all, missing_docs)]
pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub use posthorn::v1;

/// The encoded `FileDescriptorSet` of `proto/`, extension options included.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/posthorn_descriptor.bin"));

/// The proto package every Posthorn service lives in.
pub const PACKAGE: &str = "posthorn.v1";

/// Returns the decoded descriptor pool of the contract.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the descriptor set embedded at build time decodes")
    })
}

/// Returns the full names of the services of the `posthorn.v1` package.
pub fn service_names() -> Vec<String> {
    descriptor_pool()
        .services()
        .filter(|s| s.package_name() == PACKAGE)
        .map(|s| s.full_name().to_owned())
        .collect()
}

/// Returns every method of the `posthorn.v1` services.
pub fn methods() -> Vec<MethodDescriptor> {
    descriptor_pool()
        .services()
        .filter(|s| s.package_name() == PACKAGE)
        .flat_map(|s| s.methods().collect::<Vec<_>>())
        .collect()
}

/// Returns the method of a `posthorn.v1` service by its full name, for
/// example "posthorn.v1.SendService.SendEmail".
pub fn method(full_name: &str) -> Option<MethodDescriptor> {
    let (service, name) = full_name.rsplit_once('.')?;
    descriptor_pool()
        .get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == name)
}

/// Returns a method's gRPC path, for example "/posthorn.v1.SendService/SendEmail".
pub fn grpc_path(method: &MethodDescriptor) -> String {
    format!("/{}/{}", method.parent_service().full_name(), method.name())
}

/// Returns every `posthorn.v1` method's gRPC path mapped to the value of its
/// `posthorn.v1.required_scope` option (empty when unset).
pub fn required_scopes() -> HashMap<String, String> {
    let extension = descriptor_pool()
        .get_extension_by_name("posthorn.v1.required_scope")
        .expect("options.proto defines posthorn.v1.required_scope");
    methods()
        .iter()
        .map(|m| {
            let scope = match m.options().get_extension(&extension).as_ref() {
                Value::String(s) => s.clone(),
                _ => String::new(),
            };
            (grpc_path(m), scope)
        })
        .collect()
}

/// Returns the names of the `posthorn.v1` methods that carry a `google.api.http` rule.
pub fn methods_with_http_rule() -> Vec<String> {
    let extension = descriptor_pool()
        .get_extension_by_name("google.api.http")
        .expect("google/api/annotations.proto is part of the descriptor set");
    methods()
        .iter()
        .filter(|m| m.options().has_extension(&extension))
        .map(|m| m.full_name().to_owned())
        .collect()
}

/// A tonic codec for dynamic messages: it encodes any message and decodes
/// messages of the type it was made for (a method's output for a client,
/// its input for a server). The MCP door calls RPCs with it.
#[derive(Clone)]
pub struct DynamicCodec(pub prost_reflect::MessageDescriptor);

/// The encoding half of [`DynamicCodec`].
pub struct DynamicEncoder;

/// The decoding half of [`DynamicCodec`].
pub struct DynamicDecoder(prost_reflect::MessageDescriptor);

impl tonic::codec::Codec for DynamicCodec {
    type Encode = prost_reflect::DynamicMessage;
    type Decode = prost_reflect::DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> DynamicEncoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> DynamicDecoder {
        DynamicDecoder(self.0.clone())
    }
}

impl tonic::codec::Encoder for DynamicEncoder {
    type Item = prost_reflect::DynamicMessage;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: prost_reflect::DynamicMessage,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::Message as _;
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(format!("a message could not be encoded: {e}")))
    }
}

impl tonic::codec::Decoder for DynamicDecoder {
    type Item = prost_reflect::DynamicMessage;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<prost_reflect::DynamicMessage>, tonic::Status> {
        prost_reflect::DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| {
                tonic::Status::invalid_argument(format!("undecodable {}: {e}", self.0.full_name()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts `option (google.api.http)` in the proto sources, independently
    /// of the descriptor set.
    fn rules_in_sources() -> usize {
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/posthorn/v1"))
            .expect("proto/posthorn/v1 exists")
            .map(|entry| {
                std::fs::read_to_string(entry.expect("readable entry").path())
                    .expect("readable proto")
            })
            .map(|text| text.matches("option (google.api.http)").count())
            .sum()
    }

    #[test]
    fn the_embedded_descriptor_set_keeps_every_http_rule() {
        let with_rule = methods_with_http_rule();
        assert_eq!(with_rule.len(), rules_in_sources());
        assert_eq!(
            with_rule.len(),
            38,
            "every RPC but the bidi SendStream has a REST route"
        );
        assert!(
            !with_rule
                .iter()
                .any(|m| m == "posthorn.v1.SendService.SendStream")
        );
    }

    #[test]
    fn every_method_names_a_known_scope() {
        let scopes = required_scopes();
        assert_eq!(scopes.len(), 39);
        for (path, scope) in scopes {
            assert!(
                scope.parse::<crate::domain::Scope>().is_ok(),
                "{path} has scope {scope:?}"
            );
        }
    }

    #[test]
    fn the_contract_has_six_services() {
        let mut names = service_names();
        names.sort();
        assert_eq!(
            names,
            [
                "posthorn.v1.ContactsService",
                "posthorn.v1.MessagesService",
                "posthorn.v1.SendService",
                "posthorn.v1.SuppressionsService",
                "posthorn.v1.TemplatesService",
                "posthorn.v1.WebhooksService",
            ]
        );
    }
}
