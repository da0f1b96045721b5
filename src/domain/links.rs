//! Signed links in delivered mail: the open pixel, click redirects and the
//! unsubscribe link. A token carries what it is for, the message, the
//! recipient and (for a click) the destination, signed with HMAC-SHA256
//! under the server's link key: a token cannot be forged or altered, and
//! one minted for a message of one account names only that message, so it
//! can neither act on another account nor redirect anywhere it was not
//! written to go.

use std::future::Future;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::clock::{Clock, from_micros, to_micros};
use super::error::{Error, Result};

/// The bytes of the signature kept in a token: 128 bits.
const TAG_BYTES: usize = 16;

/// What a link does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Open,
    Click,
    Unsubscribe,
}

impl LinkKind {
    fn code(self) -> &'static str {
        match self {
            LinkKind::Open => "o",
            LinkKind::Click => "c",
            LinkKind::Unsubscribe => "u",
        }
    }

    fn from_code(code: &str) -> Option<LinkKind> {
        Some(match code {
            "o" => LinkKind::Open,
            "c" => LinkKind::Click,
            "u" => LinkKind::Unsubscribe,
            _ => return None,
        })
    }
}

/// What a token vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub kind: LinkKind,
    pub message_id: String,
    /// The recipient's address, as stored.
    pub recipient: String,
    /// The destination of a click; empty for the others.
    pub url: String,
}

/// Signs and checks link tokens with the server's link key.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

impl LinkSigner {
    pub fn new(key: Vec<u8>) -> LinkSigner {
        LinkSigner { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// The token of `link`: URL-safe, no padding.
    pub fn sign(&self, link: &Link) -> String {
        let payload = [
            link.kind.code(),
            &link.message_id,
            &link.recipient,
            &link.url,
        ]
        .join("\n");
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// What `token` vouches for, or `None` when it is not one this key
    /// signed (forged, altered, truncated or garbage).
    pub fn verify(&self, token: &str) -> Option<Link> {
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != TAG_BYTES {
            return None;
        }
        let mut mac = self.mac();
        mac.update(&payload);
        // Compared in constant time.
        mac.verify_truncated_left(&tag).ok()?;
        let payload = String::from_utf8(payload).ok()?;
        let mut parts = payload.splitn(4, '\n');
        let kind = LinkKind::from_code(parts.next()?)?;
        let message_id = parts.next()?.to_owned();
        let recipient = parts.next()?.to_owned();
        let url = parts.next()?.to_owned();
        Some(Link {
            kind,
            message_id,
            recipient,
            url,
        })
    }

    /// What a token of `kind` names, or NOT_FOUND for one that is not
    /// ours or is for something else.
    pub fn check(&self, token: &str, kind: LinkKind) -> Result<Link> {
        self.verify(token)
            .filter(|link| link.kind == kind)
            .ok_or_else(unknown_link)
    }
}

/// What a template's `{{ unsubscribe_url }}` renders to at accept: a mark
/// that each recipient's copy replaces with its own link at delivery.
/// Letters, digits and dashes only, so HTML escaping leaves it as it is.
pub const UNSUBSCRIBE_URL_MARK: &str = "posthorn-unsubscribe-url-9d41c7e2";

/// The links of delivered mail: the public base URL and signed tokens.
#[derive(Clone, Debug)]
pub struct Links {
    signer: LinkSigner,
    /// Where the tracking and unsubscribe endpoints are reached, without a
    /// trailing slash (`POSTHORN_PUBLIC_URL`).
    public_url: String,
    /// An address that takes unsubscribe requests by mail
    /// (`POSTHORN_UNSUBSCRIBE_MAILTO`).
    mailto: Option<String>,
}

impl Links {
    pub fn new(signer: LinkSigner, public_url: &str, mailto: Option<&str>) -> Links {
        Links {
            signer,
            public_url: public_url.trim_end_matches('/').to_owned(),
            mailto: mailto.map(str::to_owned),
        }
    }

    pub fn signer(&self) -> &LinkSigner {
        &self.signer
    }

    /// The URL of `link`: `/u/` for an unsubscribe, `/t/o/` for the open
    /// pixel, `/t/c/` for a click.
    fn url(&self, link: &Link) -> String {
        let path = match link.kind {
            LinkKind::Unsubscribe => "u",
            LinkKind::Open => "t/o",
            LinkKind::Click => "t/c",
        };
        format!("{}/{path}/{}", self.public_url, self.signer.sign(link))
    }

    /// The one-click unsubscribe link of `recipient` for `message_id`.
    pub fn unsubscribe_url(&self, message_id: &str, recipient: &str) -> String {
        self.url(&link(LinkKind::Unsubscribe, message_id, recipient, ""))
    }

    /// The `mailto:` form of the unsubscribe link, when an address takes
    /// unsubscribe requests by mail: its subject carries the recipient's
    /// token, so whoever reads that mailbox can apply it with a POST to
    /// `/u/{token}`.
    pub fn unsubscribe_mailto(&self, message_id: &str, recipient: &str) -> Option<String> {
        let address = self.mailto.as_ref()?;
        let token = self
            .signer
            .sign(&link(LinkKind::Unsubscribe, message_id, recipient, ""));
        Some(format!("mailto:{address}?subject=unsubscribe%20{token}"))
    }

    /// The open pixel of `recipient` for `message_id`.
    pub fn open_url(&self, message_id: &str, recipient: &str) -> String {
        self.url(&link(LinkKind::Open, message_id, recipient, ""))
    }

    /// The tracked form of a link to `destination` in `recipient`'s copy
    /// of `message_id`.
    pub fn click_url(&self, message_id: &str, recipient: &str, destination: &str) -> String {
        self.url(&link(LinkKind::Click, message_id, recipient, destination))
    }
}

fn link(kind: LinkKind, message_id: &str, recipient: &str, url: &str) -> Link {
    Link {
        kind,
        message_id: message_id.to_owned(),
        recipient: recipient.to_owned(),
        url: url.to_owned(),
    }
}

/// What the unsubscribe link needs from storage.
pub trait UnsubscribeStore: Send + Sync + 'static {
    /// In one transaction, for the recipient `recipient` of message
    /// `message_id` (in the message's own account): suppresses the address
    /// for good (reason `unsubscribed`, origin `unsubscribe_link`, keeping
    /// a suppression without an end), marks its contact unsubscribed, and
    /// when either changed appends an `unsubscribed` event. `None` when
    /// there is no such message; else whether anything changed.
    fn unsubscribe_recipient(
        &self,
        message_id: &str,
        recipient: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<bool>>> + Send;
}

/// The unsubscribe link's use cases: no account, no key, no cookie — the
/// signed token is the authority.
pub struct Unsubscribes<S> {
    store: S,
    signer: LinkSigner,
    clock: Arc<dyn Clock>,
}

impl<S: UnsubscribeStore> Unsubscribes<S> {
    pub fn new(store: S, signer: LinkSigner, clock: Arc<dyn Clock>) -> Self {
        Unsubscribes {
            store,
            signer,
            clock,
        }
    }

    /// What an unsubscribe token names, or NOT_FOUND.
    pub fn check(&self, token: &str) -> Result<Link> {
        self.signer.check(token, LinkKind::Unsubscribe)
    }

    /// Unsubscribes the recipient a token names; repeating it changes
    /// nothing. NOT_FOUND for a token that is not one of ours or names a
    /// message that no longer exists.
    pub async fn unsubscribe(&self, token: &str) -> Result<Link> {
        let link = self.check(token)?;
        let now = from_micros(to_micros(self.clock.now()));
        match self
            .store
            .unsubscribe_recipient(&link.message_id, &link.recipient, now)
            .await?
        {
            Some(_) => Ok(link),
            None => Err(unknown_link()),
        }
    }
}

fn unknown_link() -> Error {
    Error::NotFound {
        kind: "link",
        id: "(this token)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click() -> Link {
        Link {
            kind: LinkKind::Click,
            message_id: "msg_0192f5b8c9a87e3f9b1c2d3e4f5a6b7c".into(),
            recipient: "Jane@example.com".into(),
            url: "https://shop.example/orders/1042?utm=mail#top".into(),
        }
    }

    #[test]
    fn a_signed_link_reads_back_as_it_was_written() {
        let signer = LinkSigner::new(b"server link key".to_vec());
        for link in [
            click(),
            Link {
                kind: LinkKind::Unsubscribe,
                url: String::new(),
                ..click()
            },
        ] {
            let token = signer.sign(&link);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "{token}"
            );
            assert_eq!(signer.verify(&token), Some(link));
        }
    }

    #[test]
    fn an_altered_forged_or_foreign_token_is_refused() {
        let signer = LinkSigner::new(b"server link key".to_vec());
        let token = signer.sign(&click());
        let (payload, tag) = token.split_once('.').unwrap();

        // Another destination with the old signature.
        let other = Link {
            url: "https://evil.example/".into(),
            ..click()
        };
        let forged_payload = signer.sign(&other);
        let (other_payload, _) = forged_payload.split_once('.').unwrap();
        assert_eq!(signer.verify(&format!("{other_payload}.{tag}")), None);
        // One bit of the signature changed, the signature cut short, none.
        let mut bytes = URL_SAFE_NO_PAD.decode(tag).unwrap();
        bytes[0] ^= 1;
        let flipped = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(signer.verify(&format!("{payload}.{flipped}")), None);
        let short = URL_SAFE_NO_PAD.encode(&URL_SAFE_NO_PAD.decode(tag).unwrap()[..8]);
        assert_eq!(signer.verify(&format!("{payload}.{short}")), None);
        assert_eq!(signer.verify(payload), None);
        assert_eq!(signer.verify("not a token"), None);
        assert_eq!(signer.verify(""), None);
        // Signed under another key.
        let stranger = LinkSigner::new(b"another server".to_vec());
        assert_eq!(stranger.verify(&token), None);
    }
}
