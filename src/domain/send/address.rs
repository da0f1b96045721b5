//! Recipient and sender addresses for the send path, parsed strictly: an
//! RFC 5322 dot-atom addr-spec with a host-name domain (IDN converted to
//! punycode), nothing that could smuggle SMTP or header syntax.

use std::fmt;

/// The longest address SMTP carries (RFC 5321 path limit less the brackets).
pub const MAX_ADDRESS: usize = 254;

/// A validated mailbox address: the local part as given (ASCII), the domain
/// in lower-case ASCII (punycode for internationalised names).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    local: String,
    domain: String,
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

impl Address {
    /// Parses `raw`, or says which rule it breaks.
    pub fn parse(raw: &str) -> Result<Address, String> {
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if let Some(c) = raw
            .chars()
            .find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}'))
        {
            return Err(format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ));
        }
        if raw.contains(['<', '>']) {
            return Err("must be a bare address (local@domain) without `<` or `>`".into());
        }
        if raw.contains(char::is_whitespace) {
            return Err("must not contain spaces".into());
        }
        if raw.contains('"') {
            return Err("quoted local parts are not accepted".into());
        }
        let Some((local, domain)) = raw.rsplit_once('@') else {
            return Err("must be of the form local@domain".into());
        };
        if local.is_empty() || local.len() > 64 {
            return Err("the part before `@` must be 1 to 64 characters".into());
        }
        if !local.is_ascii() {
            return Err(
                "the part before `@` must be ASCII (internationalised local parts, SMTPUTF8, are not supported)"
                    .into(),
            );
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(
                "the part before `@` must not start or end with `.` or contain `..`".into(),
            );
        }
        if let Some(c) = local.chars().find(|c| *c != '.' && !is_atext(*c)) {
            return Err(format!("the part before `@` must not contain `{c}`"));
        }
        if domain.starts_with('[') {
            return Err("IP-address domains such as [127.0.0.1] are not accepted".into());
        }
        let ascii = idna::domain_to_ascii(domain)
            .map_err(|_| format!("`{domain}` is not a valid domain name"))?;
        if ascii.is_empty() || ascii.len() > 253 {
            return Err("the domain must be 1 to 253 characters".into());
        }
        for label in ascii.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(format!("`{domain}` is not a valid host name"));
            }
        }
        if ascii
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err("IP-address domains are not accepted".into());
        }
        let address = Address {
            local: local.to_owned(),
            domain: ascii,
        };
        if address.to_string().len() > MAX_ADDRESS {
            return Err(format!("longer than {MAX_ADDRESS} characters"));
        }
        Ok(address)
    }

    /// The part before `@`, as given.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain, lower-case ASCII.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The comparison key: the address in lower case.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local.to_ascii_lowercase(), self.domain)
    }
}

/// A mailbox: an address with an optional display name, as in
/// `Jane Doe <jane@example.com>` or `"Doe, Jane" <jane@example.com>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub name: String,
    pub address: Address,
}

impl Mailbox {
    /// Parses a bare address or `Name <address>`. The name may be quoted;
    /// it must not contain controls, `<`, `>` or `@` (a name that looks like
    /// an address is a spoofing device), and the brackets need a name before
    /// them (a bare address needs none).
    pub fn parse(raw: &str) -> Result<Mailbox, String> {
        let trimmed = raw.trim_matches(' ');
        let Some(inner) = trimmed.strip_suffix('>') else {
            return Address::parse(raw).map(|address| Mailbox {
                name: String::new(),
                address,
            });
        };
        let Some((name, address)) = inner.rsplit_once('<') else {
            return Err("must be a bare address or `Name <address>`".into());
        };
        let mut name = name.trim_matches(' ');
        if let Some(unquoted) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
            name = unquoted;
        }
        if name.is_empty() {
            return Err(
                "`<address>` needs a display name before it; give the bare address otherwise"
                    .into(),
            );
        }
        if let Some(c) = name.chars().find(|c| {
            c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '<' | '>' | '@' | '"' | '\\')
        }) {
            return Err(format!(
                "the display name must not contain {}",
                if c.is_control() {
                    format!("control characters (found U+{:04X})", c as u32)
                } else {
                    format!("`{c}`")
                }
            ));
        }
        if name.chars().count() > 256 {
            return Err("the display name must be at most 256 characters".into());
        }
        Ok(Mailbox {
            name: name.to_owned(),
            address: Address::parse(address)?,
        })
    }
}

impl fmt::Display for Mailbox {
    /// The header form: the address alone, or the name (quoted when it
    /// holds specials) and the address in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            return write!(f, "{}", self.address);
        }
        let plain = self
            .name
            .chars()
            .all(|c| c.is_alphanumeric() || " !#$%&'*+-/=?^_`{|}~".contains(c));
        if plain {
            write!(f, "{} <{}>", self.name, self.address)
        } else {
            write!(f, "\"{}\" <{}>", self.name, self.address)
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_international_domains() {
        let a = Address::parse("Jane.Doe+tag@Example.COM").unwrap();
        assert_eq!(a.to_string(), "Jane.Doe+tag@example.com");
        assert_eq!(a.key(), "jane.doe+tag@example.com");
        assert_eq!(
            Address::parse("info@bücher.example").unwrap().domain(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            Address::parse("hello@localhost").unwrap().domain(),
            "localhost"
        );
    }

    #[test]
    fn mailboxes_carry_an_optional_display_name() {
        let m = Mailbox::parse("Jane Doe <Jane@Example.com>").unwrap();
        assert_eq!(
            (m.name.as_str(), m.address.to_string().as_str()),
            ("Jane Doe", "Jane@example.com")
        );
        assert_eq!(m.to_string(), "Jane Doe <Jane@example.com>");
        let quoted = Mailbox::parse("\"Doe, Jane\" <jane@example.com>").unwrap();
        assert_eq!(quoted.name, "Doe, Jane");
        assert_eq!(quoted.to_string(), "\"Doe, Jane\" <jane@example.com>");
        assert_eq!(Mailbox::parse("jane@example.com").unwrap().name, "");
        for (raw, rule) in [
            ("<a@x.test>", "needs a display name"),
            ("Bank <support@bank.example> <a@x.test>", "`<`"),
            ("support@bank.example <a@x.test>", "`@`"),
            ("Jane\r\nBcc: x@y.test <a@x.test>", "control characters"),
            ("Jane <a@x.test>\r\n", "control characters"),
            ("Jane <a@[127.0.0.1]>", "IP-address"),
        ] {
            let error = Mailbox::parse(raw).unwrap_err();
            assert!(error.contains(rule), "{raw:?}: {error}");
        }
    }

    #[test]
    fn refuses_smtp_and_header_smuggling_and_says_why() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_domain = format!("a@{}.example", "b".repeat(250));
        for (raw, rule) in [
            ("a@x.test>\r\nRCPT TO:<victim@y.test", "control characters"),
            ("<a@x.test>", "without `<` or `>`"),
            ("\"a\r\nb\"@x.test", "control characters"),
            ("\"ab\"@x.test", "quoted local parts"),
            ("a@[127.0.0.1]", "IP-address"),
            ("a@127.0.0.1", "IP-address"),
            ("a\u{2028}b@x.test", "control characters"),
            ("a\0@x.test", "control characters"),
            ("jörg@x.test", "SMTPUTF8"),
            ("a b@x.test", "spaces"),
            ("a,b@x.test", "must not contain `,`"),
            ("a..b@x.test", "`..`"),
            ("@x.test", "1 to 64"),
            ("a@", "1 to 253"),
            ("a@-x.test", "host name"),
            ("a@x_y.test", "valid"),
            ("nobody", "local@domain"),
            ("", "empty"),
            (long_local.as_str(), "1 to 64"),
            (long_domain.as_str(), ""),
        ] {
            let error = Address::parse(raw).unwrap_err();
            assert!(error.contains(rule), "{raw:?}: {error}");
        }
    }
}
