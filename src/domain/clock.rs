//! Time as the domain sees it: UTC microseconds since the Unix epoch, behind
//! a trait so tests can control it.

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Returns the current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told: for tests of time-bounded behaviour.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock standing at `t`.
    pub fn at(t: DateTime<Utc>) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(t.timestamp_micros()))
    }

    /// Moves the clock by `by` (backwards when negative).
    pub fn advance(&self, by: chrono::Duration) {
        self.0.fetch_add(
            by.num_microseconds().unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        from_micros(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Returns `t` as UTC microseconds since the Unix epoch, the stored form.
pub fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Returns the time of a stored microsecond value.
pub fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}
