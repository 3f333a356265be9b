//! Where "now" comes from. Inject a [`ManualClock`] in tests instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// A source of the current time, in UTC.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// The current time in whole unix seconds, the unit of every score.
    fn unix_secs(&self) -> i64 {
        self.now().timestamp()
    }
}

/// The system clock (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; clones share one time.
///
/// ```
/// use whos_online::{Clock, ManualClock};
/// let clock = ManualClock::at_unix(1_000);
/// clock.advance_secs(60);
/// assert_eq!(clock.unix_secs(), 1_060);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `secs` after the unix epoch.
    pub fn at_unix(secs: i64) -> Self {
        Self(Arc::new(AtomicI64::new(secs)))
    }

    /// A clock standing at the current system time, truncated to seconds.
    pub fn now() -> Self {
        Self::at_unix(Utc::now().timestamp())
    }

    /// Sets the time, in unix seconds.
    pub fn set_unix(&self, secs: i64) {
        self.0.store(secs, Ordering::SeqCst);
    }

    /// Moves the time forward (or back, with a negative number).
    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.0.load(Ordering::SeqCst), 0).unwrap_or_default()
    }

    fn unix_secs(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
