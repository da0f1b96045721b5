//! Tracked opens and clicks: the pixel and the click redirects written into
//! delivered mail, reached without a key or a cookie — the signed token is
//! the authority. A token names one recipient of one message (and, for a
//! click, the destination it was written with), so a request can only ever
//! count for that recipient and only ever lead where the sender's link
//! went.
//!
//! What is kept about the visitor is minimised: the user agent and the
//! network the request came from (an IPv4 address without its last octet,
//! an IPv6 address cut to its /48), never the full address.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::clock::{Clock, from_micros, to_micros};
use super::error::Result;
use super::links::{Link, LinkKind, LinkSigner};
use super::messages::{EventDetails, EventType};

/// The longest user agent kept; the rest is cut.
const MAX_USER_AGENT: usize = 512;

/// Who followed a link: what the request says about its client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Visitor {
    pub user_agent: String,
    pub ip: Option<IpAddr>,
}

impl Visitor {
    /// The network of the visitor's address, as kept: an IPv4 address with
    /// its last octet zeroed, an IPv6 address cut to its /48.
    pub fn network(&self) -> String {
        match self.ip {
            None => String::new(),
            Some(IpAddr::V4(v4)) => {
                let [a, b, c, _] = v4.octets();
                format!("{a}.{b}.{c}.0")
            }
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Visitor {
                    ip: Some(IpAddr::V4(v4)),
                    ..Visitor::default()
                }
                .network(),
                None => {
                    let s = v6.segments();
                    std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
                }
            },
        }
    }

    fn user_agent(&self) -> String {
        let mut end = self.user_agent.len().min(MAX_USER_AGENT);
        while !self.user_agent.is_char_boundary(end) {
            end -= 1;
        }
        self.user_agent[..end].to_owned()
    }

    /// Why an open by this visitor is not the recipient reading the mail,
    /// when it looks like a privacy proxy fetching every image on arrival
    /// (Apple Mail Privacy Protection sends a bare `Mozilla/5.0`).
    fn prefetch(&self) -> Option<&'static str> {
        (self.user_agent.trim() == "Mozilla/5.0").then_some(
            "probably fetched on arrival by Apple Mail Privacy Protection; not counted as an open",
        )
    }

    /// A note on where an open came from, when it is known.
    fn proxy(&self) -> Option<&'static str> {
        self.user_agent.contains("GoogleImageProxy").then_some(
            "loaded through Gmail's image proxy, which fetches when the message is opened",
        )
    }
}

/// One open or click as it is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engagement {
    pub event: EventType,
    pub details: EventDetails,
    /// Whether it counts for the recipient (its count, first time and
    /// status); a prefetch is recorded in the timeline only.
    pub counted: bool,
    pub at: DateTime<Utc>,
}

/// What tracking needs from storage.
pub trait EngagementStore: Send + Sync + 'static {
    /// In one transaction, for the recipient `recipient` of message
    /// `message_id`: when counted, adds one to its opens or clicks, sets
    /// the first time, and moves it to `opened` (from sent or delivered)
    /// or `clicked` (from sent, delivered or opened) with the message's
    /// aggregate; appends the event. `false` when there is no such
    /// recipient (the message was deleted).
    fn record_engagement(
        &self,
        message_id: &str,
        recipient: &str,
        engagement: Engagement,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// The pixel's and the click redirect's use cases.
pub struct Tracking<S> {
    store: S,
    signer: LinkSigner,
    clock: Arc<dyn Clock>,
}

impl<S: EngagementStore> Tracking<S> {
    pub fn new(store: S, signer: LinkSigner, clock: Arc<dyn Clock>) -> Self {
        Tracking {
            store,
            signer,
            clock,
        }
    }

    /// What a token of `kind` names, or NOT_FOUND for one that is not ours
    /// or is for something else.
    pub fn check(&self, token: &str, kind: LinkKind) -> Result<Link> {
        self.signer.check(token, kind)
    }

    /// Records what `visitor` did through `link`: an open of the pixel or
    /// a click of a tracked link.
    pub async fn record(&self, link: &Link, visitor: &Visitor) -> Result<()> {
        let (event, url) = match link.kind {
            LinkKind::Open => (EventType::Opened, String::new()),
            LinkKind::Click => (EventType::Clicked, link.url.clone()),
            LinkKind::Unsubscribe => return Ok(()),
        };
        let prefetch = (link.kind == LinkKind::Open)
            .then(|| visitor.prefetch())
            .flatten();
        let reason = prefetch.or_else(|| visitor.proxy()).unwrap_or_default();
        let engagement = Engagement {
            event,
            details: EventDetails {
                user_agent: visitor.user_agent(),
                ip: visitor.network(),
                url,
                reason: reason.to_owned(),
                ..EventDetails::default()
            },
            counted: prefetch.is_none(),
            at: from_micros(to_micros(self.clock.now())),
        };
        self.store
            .record_engagement(&link.message_id, &link.recipient, engagement)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor(ip: &str) -> Visitor {
        Visitor {
            user_agent: String::new(),
            ip: Some(ip.parse().unwrap()),
        }
    }

    #[test]
    fn only_the_network_of_an_address_is_kept() {
        assert_eq!(visitor("203.0.113.77").network(), "203.0.113.0");
        assert_eq!(
            visitor("2001:db8:85a3:8d3:1319:8a2e:370:7348").network(),
            "2001:db8:85a3::"
        );
        assert_eq!(visitor("::ffff:198.51.100.9").network(), "198.51.100.0");
        assert_eq!(Visitor::default().network(), "");
    }

    #[test]
    fn a_long_user_agent_is_cut_on_a_character_boundary() {
        let long = Visitor {
            user_agent: "é".repeat(MAX_USER_AGENT),
            ip: None,
        };
        let kept = long.user_agent();
        assert!(kept.len() <= MAX_USER_AGENT && kept.len() >= MAX_USER_AGENT - 1);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_privacy_prefetch_is_told_apart_from_a_reader() {
        let apple = Visitor {
            user_agent: "Mozilla/5.0".into(),
            ip: None,
        };
        let reader = Visitor {
            user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15"
                .into(),
            ip: None,
        };
        assert!(apple.prefetch().is_some());
        assert!(reader.prefetch().is_none());
    }
}
