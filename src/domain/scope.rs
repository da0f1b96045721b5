//! API key scopes: what a key may do.

use std::fmt;
use std::str::FromStr;

/// A permission carried by an API key. `account:admin` grants every other scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    EmailSend,
    EmailRead,
    ContactsRead,
    ContactsWrite,
    SuppressionsRead,
    SuppressionsWrite,
    TemplatesRead,
    TemplatesWrite,
    WebhooksRead,
    WebhooksWrite,
    AccountAdmin,
}

impl Scope {
    /// Every scope, in display order.
    pub const ALL: [Scope; 11] = [
        Scope::EmailSend,
        Scope::EmailRead,
        Scope::ContactsRead,
        Scope::ContactsWrite,
        Scope::SuppressionsRead,
        Scope::SuppressionsWrite,
        Scope::TemplatesRead,
        Scope::TemplatesWrite,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::AccountAdmin,
    ];

    /// Returns the scope's wire name, for example "email:send".
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EmailSend => "email:send",
            Scope::EmailRead => "email:read",
            Scope::ContactsRead => "contacts:read",
            Scope::ContactsWrite => "contacts:write",
            Scope::SuppressionsRead => "suppressions:read",
            Scope::SuppressionsWrite => "suppressions:write",
            Scope::TemplatesRead => "templates:read",
            Scope::TemplatesWrite => "templates:write",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::AccountAdmin => "account:admin",
        }
    }

    /// Returns the accepted wire names, comma-separated, for error messages.
    pub fn accepted() -> String {
        Scope::ALL.map(Scope::as_str).join(", ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown scope name.
#[derive(Debug, thiserror::Error)]
#[error("unknown scope `{0}`; accepted scopes: {accepted}", accepted = Scope::accepted())]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// A set of scopes held by a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Builds a set from scopes, dropping duplicates.
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut scopes: Vec<Scope> = scopes.into_iter().collect();
        scopes.sort();
        scopes.dedup();
        Scopes(scopes)
    }

    /// Every scope.
    pub fn all() -> Self {
        Scopes::new(Scope::ALL)
    }

    /// Returns whether the set grants `scope`, directly or through `account:admin`.
    pub fn grants(&self, scope: Scope) -> bool {
        self.0.contains(&scope) || self.0.contains(&Scope::AccountAdmin)
    }

    /// Returns the scopes in the set.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// Returns the space-separated wire form stored in the database.
    pub fn to_stored(&self) -> String {
        self.0
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parses the space-separated stored form.
    pub fn from_stored(stored: &str) -> Result<Self, UnknownScope> {
        stored
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Scopes::new)
    }

    /// Returns whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_grants_every_scope() {
        let admin = Scopes::new([Scope::AccountAdmin]);
        assert!(Scope::ALL.iter().all(|s| admin.grants(*s)));
    }

    #[test]
    fn a_scope_grants_only_itself() {
        let send = Scopes::new([Scope::EmailSend]);
        assert!(send.grants(Scope::EmailSend));
        assert!(!send.grants(Scope::EmailRead));
    }

    #[test]
    fn stored_form_round_trips() {
        let scopes = Scopes::new([Scope::WebhooksRead, Scope::EmailSend, Scope::EmailSend]);
        assert_eq!(scopes.to_stored(), "email:send webhooks:read");
        assert_eq!(Scopes::from_stored(&scopes.to_stored()).unwrap(), scopes);
    }

    #[test]
    fn unknown_scope_names_the_accepted_ones() {
        let err = "email:sned".parse::<Scope>().unwrap_err().to_string();
        assert!(
            err.contains("email:sned") && err.contains("email:send"),
            "{err}"
        );
    }
}
