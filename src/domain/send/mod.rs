//! The accept path's rules: strict addresses, request validation and the
//! sender-identity check. The use case that stores a send builds on these.

pub mod accept;
pub mod address;
pub mod commit;
pub mod validate;

use address::Address;

use super::accounts::{Identity, IdentityKind};

/// Whether `from` may send for an account with these identities: a verified
/// identity that is the exact address (case-insensitive), or a verified
/// domain that is the address's domain.
pub fn sender_allowed(from: &Address, identities: &[Identity]) -> bool {
    identities
        .iter()
        .filter(|i| i.verified)
        .any(|i| match i.kind {
            IdentityKind::Address => Address::parse(&i.value).is_ok_and(|a| a.key() == from.key()),
            IdentityKind::Domain => {
                idna::domain_to_ascii(&i.value).is_ok_and(|domain| domain == from.domain())
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(kind: IdentityKind, value: &str, verified: bool) -> Identity {
        Identity {
            id: "idt".into(),
            account_id: "acc".into(),
            kind,
            value: value.into(),
            verified,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn only_verified_exact_addresses_or_domains_may_send() {
        let identities = [
            identity(IdentityKind::Domain, "Acme.example", true),
            identity(IdentityKind::Address, "Ops@Partner.example", true),
            identity(IdentityKind::Domain, "pending.example", false),
            identity(IdentityKind::Domain, "bücher.example", true),
        ];
        let allowed = |raw: &str| sender_allowed(&Address::parse(raw).unwrap(), &identities);
        assert!(allowed("hello@acme.example"));
        assert!(allowed("anyone@ACME.example"));
        assert!(allowed("ops@partner.example"));
        assert!(allowed("info@bücher.example"));
        assert!(
            !allowed("other@partner.example"),
            "an address identity covers only itself"
        );
        assert!(
            !allowed("x@mail.acme.example"),
            "subdomains are separate identities"
        );
        assert!(!allowed("x@pending.example"), "unverified");
        assert!(!allowed("x@evil.example"));
    }
}
