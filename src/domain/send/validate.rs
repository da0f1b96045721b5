//! Validation of a send request: every rule checked, every violation
//! reported together, each naming its field. What passes is a `ValidSend`
//! whose addresses, headers, attachments and schedule are safe to store and
//! to put on the wire.

use std::collections::HashSet;

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};

use super::address::{Address, Mailbox};
use crate::domain::FieldViolation;
pub use crate::domain::messages::RecipientKind;

/// Limits of a send; configuration with safe defaults.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_recipients: usize,
    pub max_reply_to: usize,
    pub max_attachments: usize,
    /// Decoded bytes of bodies and attachments together.
    pub max_payload_bytes: usize,
    pub max_subject_chars: usize,
    pub max_headers: usize,
    pub max_tags: usize,
    pub max_tag_chars: usize,
    pub max_metadata: usize,
    pub max_metadata_key_chars: usize,
    pub max_metadata_value_chars: usize,
    pub max_schedule_ahead: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_recipients: 50,
            max_reply_to: 10,
            max_attachments: 10,
            max_payload_bytes: 25 * 1000 * 1000,
            max_subject_chars: 998,
            max_headers: 20,
            max_tags: 10,
            max_tag_chars: 64,
            max_metadata: 50,
            max_metadata_key_chars: 64,
            max_metadata_value_chars: 1024,
            max_schedule_ahead: Duration::days(30),
        }
    }
}

/// One attachment as requested.
#[derive(Clone, Debug, Default)]
pub struct AttachmentInput {
    pub filename: String,
    pub content_type: String,
    pub content: Vec<u8>,
    pub content_id: String,
}

/// A send request as the transports hand it over.
#[derive(Clone, Debug, Default)]
pub struct SendInput {
    pub from_email: String,
    pub from_name: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub template: String,
    pub template_version: i32,
    pub has_variables: bool,
    pub headers: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub metadata: Vec<(String, String)>,
    pub attachments: Vec<AttachmentInput>,
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// Where the content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Inline {
        subject: String,
        html: String,
        text: String,
    },
    Template {
        slug: String,
        version: i32,
    },
}

/// A validated attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub content: Vec<u8>,
    pub content_id: Option<String>,
}

/// A send that passed every rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSend {
    pub from: Address,
    pub from_name: String,
    /// Every recipient once (first occurrence wins), in request order.
    pub recipients: Vec<(Mailbox, RecipientKind)>,
    pub reply_to: Vec<Mailbox>,
    pub content: Content,
    pub headers: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub metadata: Vec<(String, String)>,
    pub attachments: Vec<Attachment>,
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// Header names the sender may not set: Posthorn writes them, or they
/// belong to the transport.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "dkim-signature",
    "received",
    "return-path",
    "mime-version",
    "sender",
    "reply-to",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// Why `value` cannot go into a header, if it cannot: line breaks, NUL and
/// other controls, Unicode line separators, or an RFC 2047 encoded-word that
/// decodes to a line break.
pub fn header_unsafe(value: &str) -> Option<String> {
    if let Some(c) = value
        .chars()
        .find(|c| (c.is_control() && *c != '\t') || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        let what = match c {
            '\r' => "a carriage return (CR)".to_owned(),
            '\n' => "a line feed (LF)".to_owned(),
            '\0' => "a NUL character".to_owned(),
            c => format!("the control character U+{:04X}", c as u32),
        };
        return Some(format!("must not contain {what}"));
    }
    if encoded_words_hide_line_breaks(value) {
        return Some(
            "must not contain an encoded-word (=?…?=) that decodes to a line break".into(),
        );
    }
    None
}

/// Decodes each `=?charset?Q|B?text?=` and reports whether any holds CR or LF.
fn encoded_words_hide_line_breaks(value: &str) -> bool {
    let mut rest = value;
    while let Some(start) = rest.find("=?") {
        let word = &rest[start + 2..];
        let mut parts = word.splitn(3, '?');
        let (Some(_charset), Some(encoding), Some(tail)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Some(end) = tail.find("?=") else {
            return false;
        };
        let text = &tail[..end];
        let decoded: Vec<u8> = match encoding {
            "Q" | "q" => {
                let bytes = text.as_bytes();
                let mut out = Vec::with_capacity(bytes.len());
                let mut i = 0;
                while i < bytes.len() {
                    match bytes[i] {
                        b'=' if i + 2 < bytes.len() => {
                            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                            out.push(u8::from_str_radix(hex, 16).unwrap_or(b'='));
                            i += 3;
                        }
                        b'_' => {
                            out.push(b' ');
                            i += 1;
                        }
                        b => {
                            out.push(b);
                            i += 1;
                        }
                    }
                }
                out
            }
            "B" | "b" => base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if decoded.iter().any(|b| *b == b'\r' || *b == b'\n') {
            return true;
        }
        rest = &tail[end + 2..];
    }
    false
}

/// Whether `name` is an RFC 5322 field name: printable ASCII but `:`.
fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// The file name to use: the last path component, controls and the
/// characters file systems or headers choke on replaced, at most 255 bytes.
fn sanitise_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if matches!(c, '"' | '<' | '>' | ':' | '*' | '?' | '|' | ';') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').to_owned();
    let mut out = String::new();
    for c in trimmed.chars() {
        if out.len() + c.len_utf8() > 255 {
            break;
        }
        out.push(c);
    }
    out
}

/// A media type for a file name when none was given.
fn guess_media_type(filename: &str) -> &'static str {
    let extension = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("webp") => "image/webp",
        Some("txt") => "text/plain",
        Some("csv") => "text/csv",
        Some("html" | "htm") => "text/html",
        Some("ics") => "text/calendar",
        Some("json") => "application/json",
        Some("zip") => "application/zip",
        Some("xml") => "application/xml",
        Some("doc") => "application/msword",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// Whether `value` is `type/subtype` made of RFC 2045 token characters
/// (parameters such as `; charset=utf-8` allowed).
fn is_media_type(value: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    match essence.split_once('/') {
        Some((kind, subtype)) => token(kind) && token(subtype) && header_unsafe(value).is_none(),
        None => false,
    }
}

/// Checks every rule of a send request at `now`; all violations together.
pub fn validate(
    input: &SendInput,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<ValidSend, Vec<FieldViolation>> {
    let mut v: Vec<FieldViolation> = Vec::new();
    let mut bad =
        |field: String, description: String| v.push(FieldViolation::new(field, description));

    let from = match Address::parse(&input.from_email) {
        Ok(address) => Some(address),
        Err(_) if input.from_email.is_empty() => {
            bad("from_email".into(), "required".into());
            None
        }
        Err(e) => {
            bad("from_email".into(), e);
            None
        }
    };
    if let Some(reason) = header_unsafe(&input.from_name) {
        bad("from_name".into(), reason);
    } else if input.from_name.chars().count() > 256 {
        bad("from_name".into(), "at most 256 characters".into());
    } else if input.from_name.contains('@') {
        bad(
            "from_name".into(),
            "must not contain an address: it would look like the sender to the reader".into(),
        );
    }

    let mut seen = HashSet::new();
    let mut recipients = Vec::new();
    let mut total = 0;
    let mut valid_entries = 0;
    for (field, list, kind) in [
        ("to", &input.to, RecipientKind::To),
        ("cc", &input.cc, RecipientKind::Cc),
        ("bcc", &input.bcc, RecipientKind::Bcc),
    ] {
        for (i, raw) in list.iter().enumerate() {
            total += 1;
            match Mailbox::parse(raw) {
                Ok(mailbox) if header_unsafe(&mailbox.name).is_some() => bad(
                    format!("{field}[{i}]"),
                    format!(
                        "the display name {}",
                        header_unsafe(&mailbox.name).unwrap_or_default()
                    ),
                ),
                Ok(mailbox) => {
                    valid_entries += 1;
                    if seen.insert(mailbox.address.key()) {
                        recipients.push((mailbox, kind));
                    }
                }
                Err(e) => bad(format!("{field}[{i}]"), e),
            }
        }
    }
    if input.to.is_empty() {
        bad("to".into(), "required: at least one recipient".into());
    }
    // Counted after duplicates are removed; entries that failed to parse
    // are reported on their own and counted too.
    let distinct = recipients.len() + (total - valid_entries);
    if distinct > limits.max_recipients {
        bad(
            "to".into(),
            format!(
                "{distinct} recipients over to, cc and bcc; at most {} per message",
                limits.max_recipients
            ),
        );
    }
    let mut reply_to = Vec::new();
    for (i, raw) in input.reply_to.iter().enumerate() {
        match Mailbox::parse(raw) {
            Ok(mailbox) if header_unsafe(&mailbox.name).is_some() => bad(
                format!("reply_to[{i}]"),
                format!(
                    "the display name {}",
                    header_unsafe(&mailbox.name).unwrap_or_default()
                ),
            ),
            Ok(mailbox) => reply_to.push(mailbox),
            Err(e) => bad(format!("reply_to[{i}]"), e),
        }
    }
    if input.reply_to.len() > limits.max_reply_to {
        bad(
            "reply_to".into(),
            format!("at most {} addresses", limits.max_reply_to),
        );
    }

    let inline = !input.subject.is_empty() || !input.html.is_empty() || !input.text.is_empty();
    let content = if !input.template.is_empty() {
        if inline {
            bad(
                "template".into(),
                "send either a template or an inline body (subject, html, text), not both".into(),
            );
        }
        if let Some(violation) =
            crate::domain::templates::validate_slug("template", &input.template)
        {
            bad(violation.field, violation.description);
        }
        if input.template_version < 0 {
            bad(
                "template_version".into(),
                "must be 0 (the published version) or a version number".into(),
            );
        }
        Content::Template {
            slug: input.template.clone(),
            version: input.template_version,
        }
    } else {
        if input.subject.trim().is_empty() {
            bad(
                "subject".into(),
                "required for an inline body (or send a template)".into(),
            );
        }
        if input.html.is_empty() && input.text.is_empty() {
            bad(
                "html".into(),
                "html or text is required for an inline body (or send a template)".into(),
            );
        }
        if input.has_variables {
            bad(
                "variables".into(),
                "variables only apply to template sends".into(),
            );
        }
        if input.template_version != 0 {
            bad(
                "template_version".into(),
                "only applies to template sends".into(),
            );
        }
        Content::Inline {
            subject: input.subject.clone(),
            html: input.html.clone(),
            text: input.text.clone(),
        }
    };
    if let Some(reason) = header_unsafe(&input.subject) {
        bad("subject".into(), reason);
    } else if input.subject.chars().count() > limits.max_subject_chars {
        bad(
            "subject".into(),
            format!("at most {} characters", limits.max_subject_chars),
        );
    }
    for (field, body) in [("html", &input.html), ("text", &input.text)] {
        if body.contains('\0') {
            bad(field.into(), "must not contain NUL characters".into());
        }
    }

    if input.headers.len() > limits.max_headers {
        bad(
            "headers".into(),
            format!("at most {} custom headers", limits.max_headers),
        );
    }
    let mut headers = Vec::new();
    for (name, value) in &input.headers {
        let field = format!("headers[{name}]");
        let lower = name.to_ascii_lowercase();
        if !is_field_name(name) {
            bad(
                field,
                "the name must be printable ASCII without `:` or spaces, at most 76 characters"
                    .into(),
            );
        } else if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("content-") {
            bad(
                field,
                format!("`{name}` is set by Posthorn; custom headers carry sender metadata only"),
            );
        } else if let Some(reason) = header_unsafe(value) {
            bad(field, reason);
        } else if value.len() > 998 {
            bad(field, "the value must be at most 998 bytes".into());
        } else {
            headers.push((name.clone(), value.clone()));
        }
    }

    if input.tags.len() > limits.max_tags {
        bad("tags".into(), format!("at most {} tags", limits.max_tags));
    }
    for (i, tag) in input.tags.iter().enumerate() {
        if tag.is_empty() || tag.chars().count() > limits.max_tag_chars {
            bad(
                format!("tags[{i}]"),
                format!("must be 1 to {} characters", limits.max_tag_chars),
            );
        } else if let Some(reason) = header_unsafe(tag) {
            bad(format!("tags[{i}]"), reason);
        }
    }
    if input.metadata.len() > limits.max_metadata {
        bad(
            "metadata".into(),
            format!("at most {} entries", limits.max_metadata),
        );
    }
    for (key, value) in &input.metadata {
        let key_ok = !key.is_empty()
            && key.chars().count() <= limits.max_metadata_key_chars
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !key_ok {
            bad(
                format!("metadata[{key}]"),
                format!(
                    "keys are 1 to {} characters of a-z, A-Z, 0-9, `_`, `-`, `.`",
                    limits.max_metadata_key_chars
                ),
            );
        } else if value.chars().count() > limits.max_metadata_value_chars {
            bad(
                format!("metadata[{key}]"),
                format!(
                    "values are at most {} characters",
                    limits.max_metadata_value_chars
                ),
            );
        } else if let Some(reason) = header_unsafe(value) {
            bad(format!("metadata[{key}]"), reason);
        }
    }

    if input.attachments.len() > limits.max_attachments {
        bad(
            "attachments".into(),
            format!("at most {} attachments", limits.max_attachments),
        );
    }
    let mut attachments = Vec::new();
    let mut payload = input.html.len() + input.text.len();
    for (i, a) in input.attachments.iter().enumerate() {
        payload += a.content.len();
        if let Some(reason) = header_unsafe(&a.filename) {
            bad(format!("attachments[{i}].filename"), reason);
            continue;
        }
        let filename = sanitise_filename(&a.filename);
        if filename.is_empty() {
            bad(
                format!("attachments[{i}].filename"),
                "required: a file name such as invoice.pdf".into(),
            );
        }
        let content_type = if a.content_type.is_empty() {
            guess_media_type(&filename).to_owned()
        } else if is_media_type(&a.content_type) {
            a.content_type.trim().to_ascii_lowercase()
        } else {
            bad(
                format!("attachments[{i}].content_type"),
                "must be a media type such as application/pdf".into(),
            );
            String::new()
        };
        if a.content.is_empty() {
            bad(
                format!("attachments[{i}].content"),
                "required: the file's bytes (base64 in JSON)".into(),
            );
        }
        let content_id = if a.content_id.is_empty() {
            None
        } else if a.content_id.len() > 200
            || header_unsafe(&a.content_id).is_some()
            || a.content_id.contains(['<', '>', ' '])
        {
            bad(
                format!("attachments[{i}].content_id"),
                "must be at most 200 printable characters without `<`, `>` or spaces".into(),
            );
            None
        } else {
            Some(a.content_id.clone())
        };
        attachments.push(Attachment {
            filename,
            content_type,
            content: a.content.clone(),
            content_id,
        });
    }
    if payload > limits.max_payload_bytes {
        bad(
            "attachments".into(),
            format!(
                "bodies and attachments total {payload} bytes; at most {} after decoding",
                limits.max_payload_bytes
            ),
        );
    }

    if let Some(at) = input.scheduled_at {
        if at <= now {
            bad("scheduled_at".into(), "must be in the future".into());
        } else if at > now + limits.max_schedule_ahead {
            bad(
                "scheduled_at".into(),
                format!(
                    "at most {} days ahead",
                    limits.max_schedule_ahead.num_days()
                ),
            );
        }
    }

    match (from, v.is_empty()) {
        (Some(from), true) => Ok(ValidSend {
            from,
            from_name: input.from_name.clone(),
            recipients,
            reply_to,
            content,
            headers,
            tags: input.tags.clone(),
            metadata: input.metadata.clone(),
            attachments,
            scheduled_at: input.scheduled_at,
        }),
        _ => Err(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn inline() -> SendInput {
        SendInput {
            from_email: "hello@acme.example".into(),
            to: vec!["jane@example.com".into()],
            subject: "Hello".into(),
            text: "Hi".into(),
            ..Default::default()
        }
    }

    fn fields(input: &SendInput) -> Vec<String> {
        validate(input, &Limits::default(), now())
            .expect_err("invalid")
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    fn description(input: &SendInput, field: &str) -> String {
        validate(input, &Limits::default(), now())
            .expect_err("invalid")
            .into_iter()
            .find(|v| v.field == field)
            .unwrap_or_else(|| panic!("no violation for {field}"))
            .description
    }

    #[test]
    fn a_plain_inline_send_passes_with_duplicates_collapsed() {
        let mut input = inline();
        input.to = vec!["Jane@Example.com".into(), "bob@b\u{fc}cher.example".into()];
        input.cc = vec!["jane@example.com".into()];
        input.bcc = vec!["audit@acme.example".into()];
        let valid = validate(&input, &Limits::default(), now()).unwrap();
        let recipients: Vec<(String, RecipientKind)> = valid
            .recipients
            .iter()
            .map(|(a, k)| (a.to_string(), *k))
            .collect();
        assert_eq!(
            recipients,
            [
                ("Jane@example.com".to_owned(), RecipientKind::To),
                ("bob@xn--bcher-kva.example".to_owned(), RecipientKind::To),
                ("audit@acme.example".to_owned(), RecipientKind::Bcc),
            ]
        );
    }

    #[test]
    fn header_injection_is_refused_in_every_header_bound_field() {
        let vectors = [
            "Hi\r\nBcc: attacker@x.test",
            "Hi\nBcc: attacker@x.test",
            "Hi\rBcc: attacker@x.test",
            "Hi\r\n\r\n<body>",
            "Hi\0",
            "Hi\u{2028}Bcc: x@y",
            "=?utf-8?q?a=0D=0ABcc:_x@y?=",
            "=?utf-8?b?YQ0KQmNjOiB4QHk=?=",
        ];
        for vector in vectors {
            let mut input = inline();
            input.subject = vector.into();
            input.from_name = vector.into();
            input.headers = vec![("X-Campaign".into(), vector.into())];
            input.tags = vec![vector.into()];
            input.metadata = vec![("order".into(), vector.into())];
            input.attachments = vec![AttachmentInput {
                filename: format!("a{vector}.pdf"),
                content: vec![1],
                ..Default::default()
            }];
            assert_eq!(
                fields(&input),
                [
                    "from_name",
                    "subject",
                    "headers[X-Campaign]",
                    "tags[0]",
                    "metadata[order]",
                    "attachments[0].filename"
                ],
                "{vector:?}"
            );
        }
        // U+0085 (NEL) is a control character too.
        let mut input = inline();
        input.subject = "a\u{85}b".into();
        assert!(description(&input, "subject").contains("U+0085"));
        // Encoded-words without line breaks are fine.
        input.subject = "=?utf-8?q?caf=C3=A9?=".into();
        assert!(validate(&input, &Limits::default(), now()).is_ok());
    }

    #[test]
    fn addresses_and_recipient_counts_are_checked_with_the_field_named() {
        let mut input = inline();
        input.to = vec![
            "a@x.test>\r\nRCPT TO:<victim@y.test".into(),
            "<a@x.test>".into(),
            "a@[127.0.0.1]".into(),
        ];
        input.reply_to = vec!["not-an-address".into()];
        input.from_email = "me@".into();
        assert_eq!(
            fields(&input),
            ["from_email", "to[0]", "to[1]", "to[2]", "reply_to[0]"]
        );

        let mut input = inline();
        input.to = (0..51).map(|i| format!("r{i}@example.com")).collect();
        assert_eq!(
            description(&input, "to"),
            "51 recipients over to, cc and bcc; at most 50 per message"
        );
        input.to.truncate(30);
        input.bcc = (0..21).map(|i| format!("b{i}@example.com")).collect();
        assert!(description(&input, "to").starts_with("51 recipients"));

        let mut input = inline();
        input.to.clear();
        input.from_email.clear();
        assert_eq!(fields(&input), ["from_email", "to"]);
        input.from_name = "support@bank.example".into();
        assert!(description(&input, "from_name").contains("must not contain an address"));
    }

    #[test]
    fn a_body_is_inline_or_a_template_never_both() {
        let mut input = inline();
        input.template = "welcome".into();
        assert!(description(&input, "template").contains("not both"));

        let mut input = inline();
        input.subject.clear();
        input.text.clear();
        assert_eq!(fields(&input), ["subject", "html"]);
        input.has_variables = true;
        input.template_version = 2;
        assert_eq!(
            fields(&input),
            ["subject", "html", "variables", "template_version"]
        );

        let template = SendInput {
            from_email: "hello@acme.example".into(),
            to: vec!["jane@example.com".into()],
            template: "password-reset".into(),
            template_version: 3,
            has_variables: true,
            ..Default::default()
        };
        let valid = validate(&template, &Limits::default(), now()).unwrap();
        assert_eq!(
            valid.content,
            Content::Template {
                slug: "password-reset".into(),
                version: 3
            }
        );
        let mut bad = template.clone();
        bad.template = "Not A Slug".into();
        assert_eq!(fields(&bad), ["template"]);
    }

    #[test]
    fn custom_headers_carry_sender_metadata_only() {
        for name in [
            "From",
            "to",
            "BCC",
            "Subject",
            "Date",
            "Message-ID",
            "DKIM-Signature",
            "Received",
            "Return-Path",
            "Content-Type",
            "content-transfer-encoding",
            "MIME-Version",
            "Sender",
            "List-Unsubscribe",
        ] {
            let mut input = inline();
            input.headers = vec![(name.into(), "x".into())];
            assert!(
                description(&input, &format!("headers[{name}]")).contains("set by Posthorn"),
                "{name}"
            );
        }
        for name in ["X Bad", "X:Bad", "", "Ünicode"] {
            let mut input = inline();
            input.headers = vec![(name.into(), "x".into())];
            assert!(
                description(&input, &format!("headers[{name}]")).contains("printable ASCII"),
                "{name:?}"
            );
        }
        let mut input = inline();
        input.headers = vec![
            ("X-Campaign".into(), "spring".into()),
            ("In-Reply-To".into(), "<a@b>".into()),
        ];
        assert_eq!(
            validate(&input, &Limits::default(), now())
                .unwrap()
                .headers
                .len(),
            2
        );
    }

    #[test]
    fn attachments_get_safe_names_and_media_types_within_the_limits() {
        let mut input = inline();
        input.attachments = vec![
            AttachmentInput {
                filename: "../../etc/passwd".into(),
                content: vec![1],
                ..Default::default()
            },
            AttachmentInput {
                filename: "C:\\Users\\x\\report\"2026\".PDF".into(),
                content: vec![1],
                ..Default::default()
            },
            AttachmentInput {
                filename: "logo.png".into(),
                content: vec![1],
                content_type: "image/png".into(),
                content_id: "logo".into(),
            },
        ];
        let valid = validate(&input, &Limits::default(), now()).unwrap();
        let names: Vec<(&str, &str)> = valid
            .attachments
            .iter()
            .map(|a| (a.filename.as_str(), a.content_type.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("passwd", "application/octet-stream"),
                ("report_2026_.PDF", "application/pdf"),
                ("logo.png", "image/png")
            ]
        );
        assert_eq!(valid.attachments[2].content_id.as_deref(), Some("logo"));

        input.attachments = vec![AttachmentInput {
            filename: "".into(),
            content: vec![],
            content_type: "pdf".into(),
            content_id: "<x>".into(),
        }];
        assert_eq!(
            fields(&input),
            [
                "attachments[0].filename",
                "attachments[0].content_type",
                "attachments[0].content",
                "attachments[0].content_id"
            ]
        );

        let mut input = inline();
        input.attachments = (0..11)
            .map(|i| AttachmentInput {
                filename: format!("{i}.txt"),
                content: vec![1],
                ..Default::default()
            })
            .collect();
        assert_eq!(fields(&input), ["attachments"]);
        input.attachments = vec![AttachmentInput {
            filename: "big.bin".into(),
            content: vec![0; 25_000_001],
            ..Default::default()
        }];
        assert!(description(&input, "attachments").contains("at most 25000000 after decoding"));
    }

    #[test]
    fn schedules_tags_and_metadata_are_bounded() {
        let mut input = inline();
        input.scheduled_at = Some(now());
        assert_eq!(description(&input, "scheduled_at"), "must be in the future");
        input.scheduled_at = Some(now() + Duration::days(31));
        assert_eq!(description(&input, "scheduled_at"), "at most 30 days ahead");
        input.scheduled_at = Some(now() + Duration::days(30));
        assert!(validate(&input, &Limits::default(), now()).is_ok());

        let mut input = inline();
        input.tags = (0..11).map(|i| format!("t{i}")).collect();
        input.tags[0] = "x".repeat(65);
        input.metadata = vec![
            ("bad key".into(), "v".into()),
            ("ok".into(), "v".repeat(1025)),
        ];
        assert_eq!(
            fields(&input),
            ["tags", "tags[0]", "metadata[bad key]", "metadata[ok]"]
        );
    }
}
