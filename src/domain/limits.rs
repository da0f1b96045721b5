//! Sending limits: a request rate per API key (token bucket) and a daily
//! recipient quota per account (UTC day). Defaults come from configuration;
//! an account may override each of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::error::{Error, Result};

/// The limits that apply to one account.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Requests per second each key of the account may make, sustained.
    pub rate_per_second: f64,
    /// Requests a key may make at once after being idle.
    pub burst: u32,
    /// Recipients the account may send to per UTC day; `None` is unlimited.
    pub daily_quota: Option<u64>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            rate_per_second: 100.0,
            burst: 200,
            daily_quota: Some(100_000),
        }
    }
}

/// An account's own limits; `None` keeps the server's default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Overrides {
    pub rate_per_second: Option<f64>,
    pub burst: Option<u32>,
    /// `Some(0)` means unlimited.
    pub daily_quota: Option<u64>,
}

impl Overrides {
    /// The policy these overrides make of `defaults`.
    pub fn apply(self, defaults: Policy) -> Policy {
        Policy {
            rate_per_second: self.rate_per_second.unwrap_or(defaults.rate_per_second),
            burst: self.burst.unwrap_or(defaults.burst),
            daily_quota: match self.daily_quota {
                Some(0) => None,
                Some(n) => Some(n),
                None => defaults.daily_quota,
            },
        }
    }
}

/// Where a key stands after a request was let through: what the
/// `RateLimit-*` headers report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateState {
    /// The bucket's size.
    pub limit: u32,
    /// Requests that could be made right now.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_seconds: u64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per API key, exact under concurrency (one lock).
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Takes one token from `key`'s bucket at `now`, or fails with
    /// RATE_LIMITED and the time until one is available.
    pub fn take(&self, key: &str, policy: &Policy, now: Instant) -> Result<RateState> {
        let rate = policy.rate_per_second.max(f64::MIN_POSITIVE);
        let capacity = f64::from(policy.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            let wait = (1.0 - bucket.tokens) / rate;
            return Err(Error::RateLimited {
                retry_after: Duration::from_secs_f64(wait.min(86_400.0)),
                daily: false,
            });
        }
        bucket.tokens -= 1.0;
        Ok(RateState {
            limit: policy.burst.max(1),
            remaining: bucket.tokens.floor() as u32,
            reset_seconds: ((capacity - bucket.tokens) / rate).ceil().min(86_400.0) as u64,
        })
    }
}

/// The UTC day of `t`, counted from the Unix epoch: the quota's period.
pub fn quota_day(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

/// How long until the quota of `t`'s day resets (the next UTC midnight).
pub fn until_quota_reset(t: DateTime<Utc>) -> Duration {
    let next = (quota_day(t) + 1) * 86_400;
    Duration::from_secs((next - t.timestamp()).max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_the_rate() {
        let limiter = RateLimiter::default();
        let policy = Policy {
            rate_per_second: 2.0,
            burst: 3,
            daily_quota: None,
        };
        let t0 = Instant::now();
        for expected in [2, 1, 0] {
            let state = limiter.take("k", &policy, t0).unwrap();
            assert_eq!(state.remaining, expected);
            assert_eq!(state.limit, 3);
        }
        let Err(Error::RateLimited { retry_after, .. }) = limiter.take("k", &policy, t0) else {
            panic!("the fourth request at once must be limited");
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        assert!(
            limiter.take("other", &policy, t0).is_ok(),
            "buckets are per key"
        );
        let later = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take("k", &policy, later).unwrap().remaining, 0);
    }

    #[test]
    fn overrides_replace_defaults_and_zero_quota_is_unlimited() {
        let defaults = Policy::default();
        let policy = Overrides {
            rate_per_second: Some(5.0),
            burst: None,
            daily_quota: Some(0),
        }
        .apply(defaults);
        assert_eq!(policy.rate_per_second, 5.0);
        assert_eq!(policy.burst, defaults.burst);
        assert_eq!(policy.daily_quota, None);
    }

    #[test]
    fn the_quota_resets_at_utc_midnight() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T23:59:30Z")
            .unwrap()
            .to_utc();
        assert_eq!(until_quota_reset(t), Duration::from_secs(30));
        let next = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(quota_day(next), quota_day(t) + 1);
    }
}
