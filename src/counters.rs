//! Counters of what the background machinery did and dropped.
//!
//! Every failure that is not propagated (a full queue, a store error) is counted
//! here, so it can be watched; [`WhosOnline::counters`](crate::WhosOnline::counters)
//! takes a snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// A snapshot of the counters since start. All are monotonic.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        #[non_exhaustive]
        pub struct CounterSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> CounterSnapshot {
                CounterSnapshot { $($name: self.$name.load(Relaxed),)* }
            }
        }

        impl CounterSnapshot {
            /// Every counter with its name, e.g. `("reports_dropped", 3)`.
            pub fn fields(&self) -> [(&'static str, u64); [$(stringify!($name)),*].len()] {
                [$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    /// Reports handed to the queue.
    reports_queued,
    /// Reports dropped because the queue was full (or already shut down).
    reports_dropped,
    /// Requests not reported: no client address and no user (for example a server
    /// started without `into_make_service_with_connect_info`).
    reports_unidentified,
    /// User names rejected as empty, too long, padded with whitespace, or holding
    /// control, format, separator or filler characters (look-alikes and blanks).
    reports_invalid,
    /// Requests not reported because their deferred user hook did not answer
    /// within [`identify_timeout`](crate::Builder::identify_timeout).
    identify_timeouts,
    /// Requests not reported because [`max_identifying`](crate::Builder::max_identifying)
    /// deferred user hooks were already running when their response was ready.
    identify_over_cap,
    /// Members dropped because too many were waiting while Redis was failing.
    pending_dropped,
    /// Batches written to the presence store.
    flushes,
    /// Batches the presence store failed to take (kept and retried).
    flush_errors,
    /// Members written, summed over batches.
    members_written,
    /// Ticks that counted the sets.
    ticks,
    /// Ticks that failed to reach the presence store.
    tick_errors,
    /// Times the stored record was raised.
    record_raises,
    /// Failed reads or raises of the record store.
    record_errors,
    /// Failed reads or writes of the record cache.
    cache_errors,
    /// Ticks whose raise or read of the daily history failed (the last good
    /// copy is served meanwhile).
    history_errors,
    /// Retention runs of the history, which delete the days older than
    /// [`history_days`](crate::Builder::history_days): at most one a day, by
    /// the instance that ticks.
    history_retentions,
    /// Members removed by the cap on members per set (least recently seen first).
    members_trimmed,
    /// Members counted under [`OTHER_PLACE`](crate::OTHER_PLACE) because
    /// [`max_places`](crate::Builder::max_places) places were tracked.
    places_overflowed,
    /// Visitors and bots removed because the day's secret that keyed them was
    /// lost (written again at their next request, never counted twice).
    stale_members_removed,
    /// Times this instance found the day's visitor secret changed in the store.
    visitor_secret_changes,
    /// Record cache writes that failed earlier, tried again (at a tick, until one
    /// succeeds).
    cache_refill_retries,
    /// Times the record was reset through
    /// [`WhosOnline::reset_record`](crate::WhosOnline::reset_record) on this instance.
    record_resets,
    /// Raises kept from before a reset, dropped instead of written, or refused by
    /// the record store because a reset came first.
    stale_raises_dropped,
    /// Successful refreshes of the view.
    view_refreshes,
    /// Refreshes of the view that could not read the presence store (the last
    /// good view was kept).
    view_refresh_errors,
    /// Event streams (`GET /online/events`) opened.
    streams_opened,
    /// Event streams refused because the cap on open streams was reached.
    streams_refused,
    /// Views a slow stream subscriber never saw because a newer one replaced
    /// them first (it gets the latest; nothing queues up).
    stream_views_skipped,
}

pub(crate) fn incr(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// Lets a warning through at most once per `every_secs`, so a failing store or a
/// flood cannot flood the log.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    last: AtomicU64,
}

impl LogLimiter {
    pub(crate) fn allow(&self, every_secs: u64) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last.load(Relaxed);
        now >= last.saturating_add(every_secs)
            && self
                .last
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
    }
}
