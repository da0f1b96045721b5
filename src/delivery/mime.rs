//! The MIME of a message, built once with lettre: multipart/alternative
//! text and html, inline images (multipart/related by `content_id`),
//! attachments (multipart/mixed), UTF-8 headers RFC 2047-encoded, the
//! stored Message-ID and the accept time as Date. Bcc recipients are never
//! written into it: they exist only in the SMTP envelope.

use std::time::SystemTime;

use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use super::personal::Personal;
use crate::domain::messages::Message;

/// Why a message cannot be built (it then fails: retrying cannot help).
#[derive(Debug, thiserror::Error)]
#[error("the message cannot be built: {0}")]
pub struct BuildError(String);

fn bad(what: impl std::fmt::Display) -> BuildError {
    BuildError(what.to_string())
}

/// Line breaks as one `\n` each, so that no bare CR or LF reaches the
/// encoder (which writes CRLF) and none can end DATA early.
fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

fn mailbox(text: &str) -> Result<Mailbox, BuildError> {
    text.parse::<Mailbox>()
        .map_err(|e| bad(format!("address `{text}`: {e}")))
}

/// A body of one part or of several.
enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

/// The body: `text` and `html` (the message's, or a recipient's own) as
/// alternatives, html with its inline images, and the message's attachments
/// beside them. A text-only message has no html part.
fn body(message: &Message, html: &str, text: &str) -> Result<Body, BuildError> {
    let text = SinglePart::plain(normalise(text));
    if html.is_empty() {
        if message.attachments.is_empty() {
            return Ok(Body::Single(text));
        }
        let mut mixed = MultiPart::mixed().singlepart(text);
        for a in &message.attachments {
            let content_type = ContentType::parse(&a.content_type)
                .map_err(|e| bad(format!("media type `{}`: {e}", a.content_type)))?;
            mixed = mixed.singlepart(
                Attachment::new(a.filename.clone()).body(a.content.clone(), content_type),
            );
        }
        return Ok(Body::Multi(mixed));
    }
    let html = SinglePart::html(normalise(html));
    let (inline, attached): (Vec<_>, Vec<_>) = message
        .attachments
        .iter()
        .partition(|a| a.content_id.is_some());
    let html_part = if inline.is_empty() {
        MultiPart::alternative().singlepart(text).singlepart(html)
    } else {
        let mut related = MultiPart::related().singlepart(html);
        for a in inline {
            let content_type = ContentType::parse(&a.content_type)
                .map_err(|e| bad(format!("media type `{}`: {e}", a.content_type)))?;
            let cid = a.content_id.clone().unwrap_or_default();
            related = related
                .singlepart(Attachment::new_inline(cid).body(a.content.clone(), content_type));
        }
        MultiPart::alternative().singlepart(text).multipart(related)
    };
    if attached.is_empty() {
        return Ok(Body::Multi(html_part));
    }
    let mut mixed = MultiPart::mixed().multipart(html_part);
    for a in attached {
        let content_type = ContentType::parse(&a.content_type)
            .map_err(|e| bad(format!("media type `{}`: {e}", a.content_type)))?;
        mixed = mixed
            .singlepart(Attachment::new(a.filename.clone()).body(a.content.clone(), content_type));
    }
    Ok(Body::Multi(mixed))
}

/// Builds the RFC 5322 message: the copy every recipient shares, or one
/// recipient's own.
pub fn build(message: &Message, personal: Option<&Personal>) -> Result<Vec<u8>, BuildError> {
    let list_unsubscribe = personal.and_then(Personal::list_unsubscribe);
    let from_address = message
        .from_email
        .parse::<lettre::Address>()
        .map_err(|e| bad(format!("sender `{}`: {e}", message.from_email)))?;
    let from_name = (!message.from_name.is_empty()).then(|| message.from_name.clone());
    let mut builder = lettre::Message::builder()
        .from(Mailbox::new(from_name, from_address.clone()))
        .subject(message.subject.clone())
        .date(SystemTime::from(message.created_at))
        .message_id(Some(message.message_id_header.clone()));
    for to in &message.to {
        builder = builder.to(mailbox(to)?);
    }
    for cc in &message.cc {
        builder = builder.cc(mailbox(cc)?);
    }
    for reply_to in &message.reply_to {
        builder = builder.reply_to(mailbox(reply_to)?);
    }
    for (name, value) in &message.headers {
        if list_unsubscribe.is_some() && name.to_ascii_lowercase().starts_with("list-unsubscribe") {
            continue;
        }
        let name = HeaderName::new_from_ascii(name.clone())
            .map_err(|e| bad(format!("header `{name}`: {e}")))?;
        builder = builder.raw_header(HeaderValue::new(name, value.clone()));
    }
    if let Some(value) = list_unsubscribe {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                value,
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
    }
    // The envelope is the transport's business; lettre wants one to build.
    let envelope = Envelope::new(Some(from_address.clone()), vec![from_address])
        .map_err(|e| bad(format!("envelope: {e}")))?;
    let builder = builder.envelope(envelope);
    let (html, text) = match personal {
        Some(p) => (p.html.as_ref(), p.text.as_ref()),
        None => (message.html.as_str(), message.text.as_str()),
    };
    let built = match body(message, html, text)? {
        Body::Single(part) => builder.singlepart(part),
        Body::Multi(parts) => builder.multipart(parts),
    }
    .map_err(bad)?;
    Ok(built.formatted())
}
