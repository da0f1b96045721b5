//! Email addresses as Posthorn stores and compares them: the domain in
//! lower case, the local part kept as given but compared case-insensitively.

use std::fmt;

/// A syntactically valid address (dot-atom local part, host-name domain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailAddress {
    display: String,
    key: String,
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

impl EmailAddress {
    /// Parses `raw`, or says which rule it breaks.
    pub fn parse(raw: &str) -> Result<EmailAddress, String> {
        if raw.is_empty() {
            return Err("required".into());
        }
        if raw.chars().count() > 254 {
            return Err("longer than 254 characters".into());
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or control characters".into());
        }
        let Some((local, domain)) = raw.rsplit_once('@') else {
            return Err("must be an address of the form local@domain".into());
        };
        if local.is_empty() || local.chars().count() > 64 {
            return Err("the part before `@` must be 1 to 64 characters".into());
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(
                "the part before `@` must not start or end with `.` or contain `..`".into(),
            );
        }
        if let Some(c) = local.chars().find(|c| *c != '.' && !is_atext(*c)) {
            return Err(format!("the part before `@` must not contain `{c}`"));
        }
        let domain = domain.to_lowercase();
        if domain.is_empty() || domain.len() > 253 {
            return Err("the domain must be 1 to 253 characters".into());
        }
        for label in domain.split('.') {
            let valid = !label.is_empty()
                && label.chars().count() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-');
            if !valid {
                return Err(format!("the domain `{domain}` is not a valid host name"));
            }
        }
        Ok(EmailAddress {
            display: format!("{local}@{domain}"),
            key: format!("{}@{domain}", local.to_lowercase()),
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
    }

    #[test]
    fn refuses_what_is_not_an_address_with_the_rule() {
        for (raw, rule) in [
            ("", "required"),
            ("no-at-sign", "local@domain"),
            ("@example.com", "1 to 64"),
            ("a b@example.com", "spaces"),
            ("a\r\nBcc: x@y.z@example.com", "control"),
            ("<a@example.com>", "must not contain `<`"),
            ("a..b@example.com", "`..`"),
            ("a@-example.com", "host name"),
            ("a@example..com", "host name"),
            ("a@", "1 to 253"),
        ] {
            let error = EmailAddress::parse(raw).unwrap_err();
            assert!(error.contains(rule), "{raw:?}: {error}");
        }
    }
}
