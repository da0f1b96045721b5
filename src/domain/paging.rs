//! Page sizes of the list RPCs: 0 asks for the default, anything else must
//! be within 1 and the RPC's maximum.

use super::FieldViolation;

/// The validated page size, or the violation naming `page_size`.
pub fn page_size(requested: i32, default: u32, max: u32) -> Result<u64, FieldViolation> {
    match requested {
        0 => Ok(u64::from(default)),
        n if n > 0 && n as u32 <= max => Ok(n as u64),
        _ => Err(FieldViolation::new(
            "page_size",
            format!("must be between 1 and {max} (0 means {default})"),
        )),
    }
}

/// Where a listing ordered by `(created_at, id)` stopped: the last row's
/// keys, carried in an opaque page token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyset {
    /// The last row's creation time, in microseconds.
    pub at: i64,
    pub id: String,
}

impl Keyset {
    /// The page token; `tag` names the listing (and the filter it was
    /// issued for), so a token is only read back by the same listing.
    pub fn token(&self, tag: &str) -> String {
        hex::encode(format!("{tag}:{}:{}", self.at, self.id))
    }

    /// Reads a request's page token: `None` when it is empty, the
    /// violation naming `page_token` when `issuer` (the RPC) did not make
    /// it under `tag`.
    pub fn from_request(
        token: &str,
        tag: &str,
        issuer: &str,
    ) -> Result<Option<Keyset>, FieldViolation> {
        if token.is_empty() {
            return Ok(None);
        }
        Keyset::read(token, tag).map(Some).ok_or_else(|| {
            FieldViolation::new(
                "page_token",
                format!("not a page token returned by {issuer} for this request"),
            )
        })
    }

    /// Reads a token `token(tag)` made, or `None` when it is not one.
    pub fn read(token: &str, tag: &str) -> Option<Keyset> {
        let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
        let rest = text.strip_prefix(tag)?.strip_prefix(':')?;
        let (at, id) = rest.split_once(':')?;
        Some(Keyset {
            at: at.parse().ok()?,
            id: id.to_owned(),
        })
    }
}

/// Cuts `rows`, read with one more than `limit`, to a page, and returns
/// the token of the next page under `tag` (empty on the last).
pub fn next_page<T>(
    rows: &mut Vec<T>,
    limit: u64,
    tag: &str,
    keys: impl Fn(&T) -> Keyset,
) -> String {
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    match rows.last() {
        Some(last) if more => keys(last).token(tag),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyset_token_reads_back_only_under_its_own_tag() {
        let keys = Keyset {
            at: 1_764_000_000_000_000,
            id: "whd_0a1b".into(),
        };
        let token = keys.token("d1/pending/");
        assert_eq!(Keyset::read(&token, "d1/pending/"), Some(keys));
        assert_eq!(Keyset::read(&token, "d1//"), None);
        assert_eq!(Keyset::read("zz", "d1/pending/"), None);
        assert_eq!(
            Keyset::read(&hex::encode("d1/pending/:x:y"), "d1/pending/"),
            None
        );
    }
}
