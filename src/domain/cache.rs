//! A small time-bounded cache for reads on the hot path (API keys, verified
//! senders, account limits): an entry is reused for at most its TTL, so a
//! change made elsewhere — by the CLI, or by another server process on the
//! same database — applies within that time.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::clock::Clock;

/// Entries beyond this are dropped wholesale: the cache holds keys and
/// accounts that are in use, and is rebuilt by the next reads.
const MAX_ENTRIES: usize = 10_000;

/// Values by key, each for at most `ttl` after it was read.
pub struct TtlCache<K, V> {
    ttl: Duration,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<K, (V, DateTime<Utc>)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// A cache whose entries live `ttl`; a zero TTL caches nothing.
    pub fn new(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        TtlCache {
            ttl,
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, stored: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        // A clock that went backwards expires the entry rather than
        // extending it.
        (now - stored)
            .to_std()
            .is_ok_and(|elapsed| elapsed < self.ttl)
    }

    /// The value stored for `key` if it is still fresh.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if self.ttl.is_zero() {
            return None;
        }
        let now = self.clock.now();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, stored)| self.fresh(*stored, now))
            .map(|(value, _)| value.clone())
    }

    /// Stores `value` for `key`, read now.
    pub fn insert(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let now = self.clock.now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, stored)| {
                (now - *stored)
                    .to_std()
                    .is_ok_and(|elapsed| elapsed < self.ttl)
            });
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (value, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::ManualClock;

    #[test]
    fn entries_live_for_their_ttl_and_not_across_a_clock_step_back() {
        let clock = Arc::new(ManualClock::at(Utc::now()));
        let cache = TtlCache::new(Duration::from_secs(5), clock.clone());
        cache.insert("k".to_owned(), 1);
        assert_eq!(cache.get("k"), Some(1));
        clock.advance(chrono::Duration::microseconds(4_999_999));
        assert_eq!(cache.get("k"), Some(1), "just inside the TTL");
        clock.advance(chrono::Duration::microseconds(1));
        assert_eq!(cache.get("k"), None, "expired at the TTL");
        cache.insert("k".to_owned(), 2);
        clock.advance(chrono::Duration::microseconds(-1));
        assert_eq!(cache.get("k"), None, "a clock that steps back expires");
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = TtlCache::new(Duration::ZERO, Arc::new(ManualClock::default()));
        cache.insert("k".to_owned(), 1);
        assert_eq!(cache.get("k"), None);
    }
}
