//! API keys: `ph_live_…` or `ph_test_…` followed by 40 base62 characters
//! (≈238 random bits). Shown once; stored as a SHA-256 hash beside a short
//! public prefix that finds the row without revealing the secret.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SECRET_LEN: usize = 40;
/// Characters of the secret that are part of the public prefix.
const PREFIX_SECRET_CHARS: usize = 8;

/// Whether a key delivers for real or always captures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMode {
    Live,
    Test,
}

impl KeyMode {
    fn tag(self) -> &'static str {
        match self {
            KeyMode::Live => "live",
            KeyMode::Test => "test",
        }
    }
}

/// A freshly generated key: the plaintext (shown once) and what is stored.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The whole key, to show the user once.
    pub plaintext: String,
    /// The public lookup prefix, for example "ph_live_Ab3dE5gH".
    pub prefix: String,
    /// Hex SHA-256 of the whole key.
    pub secret_hash: String,
}

/// Generates a new key.
pub fn generate(mode: KeyMode) -> GeneratedKey {
    let mut rng = rand::rng();
    let secret: String = (0..SECRET_LEN)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    let plaintext = format!("ph_{}_{secret}", mode.tag());
    let parsed = parse(&plaintext).expect("a generated key parses");
    GeneratedKey {
        prefix: parsed.prefix,
        secret_hash: hash(&plaintext),
        plaintext,
    }
}

/// A presented key that has the right shape.
#[derive(Debug, PartialEq, Eq)]
pub struct PresentedKey {
    /// The lookup prefix.
    pub prefix: String,
    /// Live or test.
    pub mode: KeyMode,
}

/// Parses a presented key's shape; `None` when it cannot be a Posthorn key.
pub fn parse(key: &str) -> Option<PresentedKey> {
    let (mode, secret) = if let Some(s) = key.strip_prefix("ph_live_") {
        (KeyMode::Live, s)
    } else if let Some(s) = key.strip_prefix("ph_test_") {
        (KeyMode::Test, s)
    } else {
        return None;
    };
    if secret.len() != SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(PresentedKey {
        prefix: format!("ph_{}_{}", mode.tag(), &secret[..PREFIX_SECRET_CHARS]),
        mode,
    })
}

/// Returns the hex SHA-256 of a key, its stored form.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Compares a presented key with a stored hash in constant time.
pub fn matches(presented: &str, stored_hash: &str) -> bool {
    hash(presented)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_match_only_their_hash() {
        let key = generate(KeyMode::Live);
        assert!(key.plaintext.starts_with("ph_live_"));
        assert!(key.plaintext.starts_with(&key.prefix));
        assert!(matches(&key.plaintext, &key.secret_hash));
        let other = generate(KeyMode::Live);
        assert!(!matches(&other.plaintext, &key.secret_hash));
        assert_ne!(key.plaintext, other.plaintext);
    }

    #[test]
    fn test_keys_say_so() {
        let key = generate(KeyMode::Test);
        assert_eq!(parse(&key.plaintext).unwrap().mode, KeyMode::Test);
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for bad in [
            "",
            "ph_live_",
            "ph_prod_0123456789012345678901234567890123456789",
            "ph_live_012345678901234567890123456789012345678",
            "ph_live_01234567890123456789012345678901234567-9",
            "Bearer ph_live_0123456789012345678901234567890123456789",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} should not parse");
        }
    }
}
