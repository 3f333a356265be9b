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

    /// Whole seconds from the kernel's coarse clock where there is one (Linux:
    /// `CLOCK_REALTIME_COARSE`, read from the vDSO in ~5 ns, at most a few
    /// milliseconds behind), else from `SystemTime` (~35-60 ns). The de-dup
    /// check reads this on every request.
    fn unix_secs(&self) -> i64 {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
            t.tv_sec
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
}

/// A clock that only moves when told to; clones share one time.
///
/// ```
/// use axum_whos_online::{Clock, ManualClock};
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

/// Sentinel of [`ServerClock`]: no server time seen yet.
const UNSYNCED: i64 = i64::MIN;

/// The configured clock, moved onto the Redis server's clock.
///
/// Holds the offset "Redis `TIME` minus local time" in milliseconds; the Redis
/// store refreshes it from a `TIME` it appends to the pipelines it sends anyway
/// (each flush, tick and `/online` read), so keeping it costs no round trip.
/// Every instance sharing one Redis then stamps and prunes on one clock, however
/// far its own clock is off. Until the first `TIME` answers, it reads as the
/// configured clock ([`is_synced`](Self::is_synced) is false) and the store
/// shifts what it was handed by the offset it then learns.
pub(crate) struct ServerClock {
    local: std::sync::Arc<dyn Clock>,
    offset_ms: AtomicI64,
    /// Told when the first server time arrives.
    synced: tokio::sync::Notify,
}

impl std::fmt::Debug for ServerClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerClock")
            .field("offset_ms", &self.offset_ms())
            .finish_non_exhaustive()
    }
}

impl ServerClock {
    pub(crate) fn new(local: std::sync::Arc<dyn Clock>) -> Self {
        Self {
            local,
            offset_ms: AtomicI64::new(UNSYNCED),
            synced: tokio::sync::Notify::new(),
        }
    }

    /// Waits until a server time has been seen, for at most `within`.
    ///
    /// A time read from this clock before its first sync is local time, and
    /// the store shifts it onto the server's only in the operation that
    /// syncs: a reading taken before another operation synced would go out
    /// unshifted (a cutoff ten minutes off prunes everyone). So the crate's
    /// tasks wait here before they read the clock; the wiring starts the first
    /// sync at once. Past `within` (Redis down), they go on with local time.
    pub(crate) async fn ready(&self, within: std::time::Duration) {
        let _ = tokio::time::timeout(within, async {
            loop {
                let told = self.synced.notified();
                if self.is_synced() {
                    return;
                }
                told.await;
            }
        })
        .await;
    }

    /// Whether a server time has been seen.
    pub(crate) fn is_synced(&self) -> bool {
        self.offset_ms.load(Ordering::Relaxed) != UNSYNCED
    }

    /// Server minus local time, once known.
    pub(crate) fn offset_ms(&self) -> Option<i64> {
        let o = self.offset_ms.load(Ordering::Relaxed);
        (o != UNSYNCED).then_some(o)
    }

    /// Moves a time in unix seconds read from the configured clock onto the
    /// server's clock, as [`now`](Clock::now) would have; unchanged until synced.
    pub(crate) fn shift(&self, local_secs: i64) -> i64 {
        match self.offset_ms() {
            Some(ms) => local_secs
                .saturating_mul(1000)
                .saturating_add(ms)
                .div_euclid(1000),
            None => local_secs,
        }
    }

    /// Takes a server time read just now (`TIME`: seconds and microseconds).
    pub(crate) fn observe(&self, secs: i64, micros: i64) {
        let server_ms = secs.saturating_mul(1000).saturating_add(micros / 1000);
        let offset = server_ms.saturating_sub(self.local.now().timestamp_millis());
        // Never store the sentinel by accident.
        let before = self
            .offset_ms
            .swap(offset.max(UNSYNCED + 1), Ordering::Relaxed);
        if before == UNSYNCED {
            self.synced.notify_waiters();
        }
    }
}

impl Clock for ServerClock {
    fn now(&self) -> DateTime<Utc> {
        let local = self.local.now();
        match self.offset_ms() {
            Some(ms) => local + chrono::TimeDelta::milliseconds(ms),
            None => local,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tasks wait for the first sync before they read the clock, and go on
    /// unsynced when it never comes.
    #[tokio::test(start_paused = true)]
    async fn ready_waits_for_the_first_sync_or_gives_up() {
        let server = Arc::new(ServerClock::new(Arc::new(ManualClock::at_unix(1_000))));
        let started = tokio::time::Instant::now();
        server.ready(std::time::Duration::from_secs(2)).await;
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(2));
        assert!(!server.is_synced());

        let syncing = Arc::clone(&server);
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            syncing.observe(1_600, 0);
        });
        let started = tokio::time::Instant::now();
        server.ready(std::time::Duration::from_secs(2)).await;
        assert_eq!(started.elapsed(), std::time::Duration::from_millis(300));
        assert_eq!(server.unix_secs(), 1_600);
        // Synced: no wait at all.
        let started = tokio::time::Instant::now();
        Settle(Some(Arc::clone(&server))).wait().await;
        assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    }

    #[test]
    fn server_clock_reads_local_until_synced_then_adds_the_offset() {
        let local = ManualClock::at_unix(1_000);
        let server = ServerClock::new(Arc::new(local.clone()));
        assert!(!server.is_synced());
        assert_eq!(server.unix_secs(), 1_000);
        assert_eq!(server.shift(1_000), 1_000);
        // The server is ten minutes ahead.
        server.observe(1_600, 250_000);
        assert!(server.is_synced());
        assert_eq!(server.offset_ms(), Some(600_250));
        assert_eq!(server.shift(1_000), 1_600);
        assert_eq!(server.unix_secs(), 1_600);
        local.advance_secs(5);
        assert_eq!(server.unix_secs(), 1_605);
        // And behind.
        server.observe(400, 0);
        assert_eq!(server.unix_secs(), 400);
        assert_eq!(server.shift(1_005), 400);
    }
}

/// How long the crate's tasks wait for the server clock's first sync before
/// they read it (see [`ServerClock::ready`]).
pub(crate) const FIRST_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The server clock to wait for before reading the time, if there is one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settle(pub(crate) Option<std::sync::Arc<ServerClock>>);

impl Settle {
    /// Returns once the clock reads server time, or after [`FIRST_SYNC_WAIT`].
    pub(crate) async fn wait(&self) {
        if let Some(clock) = &self.0
            && !clock.is_synced()
        {
            clock.ready(FIRST_SYNC_WAIT).await;
        }
    }
}
