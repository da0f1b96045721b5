//! The codec of the generated gRPC code (`build.rs` names it): prost's
//! encoding, with one difference. A request body that is not a valid
//! protobuf message of the method's input type is the caller's mistake, so
//! it is answered as the REST door answers a body that is not JSON: with
//! INVALID_ARGUMENT, reason VALIDATION_FAILED and a `BadRequest` violation
//! naming the field prost stopped at, not with prost's INTERNAL.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::domain::Error;

/// Encodes `T` and decodes `U` with prost.
pub struct ProtoCodec<T, U>(PhantomData<fn() -> (T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        ProtoCodec(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> ProstEncoder<T> {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> ProtoDecoder<U> {
        ProtoDecoder(PhantomData)
    }
}

/// Decodes `U`; a message that does not decode is a validation error.
pub struct ProtoDecoder<U>(PhantomData<fn() -> U>);

impl<U: Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|error| super::status::to_status(undecodable(&error)))
    }
}

/// The violation of a message prost could not decode. prost writes where it
/// stopped as `Inner.field: Outer.field: ` before the cause, innermost
/// first; the violation names the path from the request down, as the other
/// violations do ("attachments.filename"), or no field when the message
/// broke off outside any field.
fn undecodable(error: &prost::DecodeError) -> Error {
    let shown = error.to_string();
    let mut rest = shown
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(&shown);
    let mut fields = Vec::new();
    while let Some((location, after)) = rest.split_once(": ") {
        let Some((message, field)) = location.split_once('.') else {
            break;
        };
        let identifier = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '#')
        };
        if !identifier(message) || !identifier(field) {
            break;
        }
        fields.push(field.trim_start_matches("r#"));
        rest = after;
    }
    fields.reverse();
    Error::invalid(
        fields.join("."),
        format!("the request is not a valid protobuf message of this method's input type: {rest}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::SendEmailRequest;

    fn violation(bytes: &[u8]) -> (String, String) {
        let error = SendEmailRequest::decode(bytes).expect_err("the bytes do not decode");
        match undecodable(&error) {
            Error::Validation(violations) => {
                let v = &violations[0];
                (v.field.clone(), v.description.clone())
            }
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn a_wrong_wire_type_names_its_field() {
        // Field 1 (from_email) sent as a varint.
        let (field, description) = violation(&[0x08, 0x01]);
        assert_eq!(field, "from_email");
        assert!(
            description.ends_with("invalid wire type: Varint (expected LengthDelimited)"),
            "{description}"
        );
    }

    #[test]
    fn a_nested_field_is_named_from_the_request_down() {
        // attachments (16) holding an Attachment whose field 1 is not UTF-8.
        let (field, description) = violation(&[0x82, 0x01, 0x03, 0x0a, 0x01, 0xff]);
        assert_eq!(field, "attachments.filename");
        assert!(description.ends_with("not UTF-8 encoded"), "{description}");
    }

    #[test]
    fn a_value_cut_short_names_its_field() {
        // from_email announcing 5 bytes and holding 1.
        let (field, description) = violation(&[0x0a, 0x05, b'a']);
        assert_eq!(field, "from_email");
        assert!(description.ends_with("buffer underflow"), "{description}");
    }

    #[test]
    fn a_message_broken_off_outside_a_field_names_none() {
        // The first byte of a two-byte key, and then nothing.
        let (field, description) = violation(&[0x82]);
        assert_eq!(field, "");
        assert!(description.ends_with("invalid varint"), "{description}");
    }
}
