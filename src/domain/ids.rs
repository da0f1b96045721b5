//! Public identifiers: a type prefix and a time-ordered UUIDv7 in hex, so ids
//! sort by creation time and say what they name ("msg_0192f5…").

/// Returns a new id with the given prefix, for example `new_id("msg")`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Returns whether `id` has the shape of an id with `prefix`.
pub fn is_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_sort_by_creation() {
        let a = new_id("msg");
        let b = new_id("msg");
        assert!(is_id(&a, "msg") && is_id(&b, "msg"));
        assert!(!is_id(&a, "acc"));
        assert!(a < b, "{a} should sort before {b}");
    }
}
