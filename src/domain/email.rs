//! Email addresses as Posthorn stores and compares them for contacts and
//! suppressions: parsed by the send path's strict rules (`send::address`),
//! shown with the local part as given and the domain in lower case, and
//! matched case-insensitively.

use std::fmt;

use super::send::address::Address;

/// A valid address with its display form and comparison key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailAddress {
    display: String,
    key: String,
}

impl EmailAddress {
    /// Parses `raw`, or says which rule it breaks.
    pub fn parse(raw: &str) -> Result<EmailAddress, String> {
        if raw.is_empty() {
            return Err("required".into());
        }
        let address = Address::parse(raw)?;
        Ok(EmailAddress {
            display: address.to_string(),
            key: address.key(),
        })
    }

    /// The address as stored and shown: the local part as given, the
    /// domain in lower case.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The comparison key: the whole address in lower case.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The comparison key of an address as stored (its domain already in
    /// lower case), for example a recipient's.
    pub fn key_of_stored(display: &str) -> String {
        display.to_ascii_lowercase()
    }

    /// Rebuilds an address read back from storage.
    pub fn from_stored(display: String, key: String) -> EmailAddress {
        EmailAddress { display, key }
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_the_domain_and_keys_case_insensitively() {
        let a = EmailAddress::parse("Jane.Doe+x@Example.COM").unwrap();
        assert_eq!(a.as_str(), "Jane.Doe+x@example.com");
        assert_eq!(a.key(), "jane.doe+x@example.com");
        assert_eq!(
            EmailAddress::parse("a@localhost").unwrap().as_str(),
            "a@localhost"
        );
        assert_eq!(
            EmailAddress::parse("a@Bücher.example").unwrap().as_str(),
            "a@xn--bcher-kva.example"
        );
    }

    #[test]
    fn refuses_what_is_not_an_address_with_the_rule() {
        for (raw, rule) in [
            ("", "required"),
            ("no-at-sign", "local@domain"),
            ("a b@example.com", "spaces"),
            ("a\r\nBcc: x@y.z@example.com", "control"),
            ("<a@example.com>", "`<` or `>`"),
            ("a..b@example.com", "`..`"),
            ("a@-example.com", "host name"),
        ] {
            let error = EmailAddress::parse(raw).unwrap_err();
            assert!(error.contains(rule), "{raw:?}: {error}");
        }
    }
}
