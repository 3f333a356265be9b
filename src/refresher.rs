//! The refresher: keeps the instance's [`View`] current, one read per refresh
//! however many readers and subscribers there are.
//!
//! Each refresh reads the presence store once (one pipelined round trip: the
//! most recent users and the four counts) and the record through its cache. When
//! the counts beat the record, it raises the record at once through the
//! ticker's atomic, raise-only write, so that no view shows "3 online" beside
//! "most ever 2". A failed read keeps the last good view.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::clock::{Clock, Settle};
use crate::counters::{Counters, LogLimiter, incr};
use crate::presence::{Counts, HiddenUsers, PlaceCount, PresenceStore};
use crate::record::Record;
use crate::ticker::Ticker;
use crate::view::View;

pub(crate) struct Refresher {
    pub(crate) presence: Arc<dyn PresenceStore>,
    pub(crate) ticker: Arc<Ticker>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The server clock's first sync, waited for before the clock is read.
    pub(crate) settle: Settle,
    pub(crate) window: Duration,
    /// How many names the view lists.
    pub(crate) names: usize,
    pub(crate) hidden_users: HiddenUsers,
    pub(crate) counters: Arc<Counters>,
    current: ArcSwap<View>,
    changes: watch::Sender<Arc<View>>,
    /// Refreshes of one instance never overlap.
    gate: tokio::sync::Mutex<()>,
    log: LogLimiter,
}

impl Refresher {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        presence: Arc<dyn PresenceStore>,
        ticker: Arc<Ticker>,
        clock: Arc<dyn Clock>,
        settle: Settle,
        window: Duration,
        names: usize,
        hidden_users: HiddenUsers,
        counters: Arc<Counters>,
    ) -> Self {
        let first = Arc::new(View {
            window,
            ..View::default()
        });
        Self {
            presence,
            ticker,
            clock,
            settle,
            window,
            names,
            hidden_users,
            counters,
            current: ArcSwap::new(Arc::clone(&first)),
            changes: watch::Sender::new(first),
            gate: tokio::sync::Mutex::new(()),
            log: LogLimiter::default(),
        }
    }

    /// The current view: a shared reference, no I/O, never blocks.
    pub(crate) fn view(&self) -> Arc<View> {
        self.current.load_full()
    }

    /// A receiver told of every view whose content changed (counts, names or
    /// record); it sees the latest only, however slowly it reads.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.changes.subscribe()
    }

    /// Makes `view` the current one, and tells the subscribers when its
    /// content changed.
    fn publish(&self, view: Arc<View>, changed: bool) {
        self.current.store(Arc::clone(&view));
        if changed {
            self.changes.send_replace(view);
        }
    }

    /// One refresh now; the new view, or the error that kept the old one.
    pub(crate) async fn refresh(&self) -> Result<Arc<View>> {
        let _gate = self.gate.lock().await;
        self.settle.wait().await;
        let now = self.clock.now();
        let cutoff = now.timestamp() - i64::try_from(self.window.as_secs()).unwrap_or(i64::MAX);
        let seen = self.presence.snapshot(cutoff, self.names).await;
        let old = self.view();
        // The record is read even when presence is not: with Redis down, the
        // record still comes from Postgres.
        let mut record = match self.ticker.current_record().await {
            Ok(r) => {
                let mut known = old.record;
                known.merge(&r);
                known
            }
            // The cache and the record store down: the record this view had.
            Err(_) => old.record,
        };
        let seen = match seen {
            Ok(seen) => seen,
            Err(e) => {
                incr(&self.counters.view_refresh_errors);
                if self.log.allow(30) {
                    tracing::warn!(error = %e, "whos-online: view not refreshed; serving the last good one");
                } else {
                    tracing::debug!(error = %e, "whos-online: view not refreshed");
                }
                // The counts and their time stay, and the record is never
                // below them (a reset read now may be).
                record.raise(&Record {
                    generation: record.generation,
                    ..Record::seen(
                        old.counts.users,
                        old.counts.visitors,
                        old.as_of.unwrap_or(now),
                    )
                });
                if record != old.record {
                    // The record is news.
                    let view = View {
                        record,
                        version: old.version + 1,
                        refreshes: old.refreshes + 1,
                        ..(*old).clone()
                    };
                    self.publish(Arc::new(view), true);
                }
                return Err(e);
            }
        };
        let counts = self.hidden_users.counts(seen.counts);
        // Today's peaks between ticks: the next tick writes them.
        self.ticker.saw(counts, now);
        let fresh = Record {
            generation: record.generation,
            ..Record::seen(counts.users, counts.visitors, now)
        };
        if record.is_beaten_by(&fresh) {
            if let Some(stored) = self.ticker.raise_seen(fresh).await {
                record.merge(&stored);
            }
            // Never below the counts beside it, even while the store is down
            // (the raise is then kept and retried by the ticker).
            record.raise(&fresh);
        }
        let sorted: Arc<[String]> = {
            let mut names: Vec<String> = seen.recent.iter().map(|(n, _)| n.clone()).collect();
            names.sort_unstable();
            names.into()
        };
        let mut view = View {
            counts,
            recent: seen.recent.into(),
            sorted,
            bots: seen.bots.into(),
            recent_places: seen.recent_places.into(),
            places: {
                let mut places: Vec<PlaceCount> = seen
                    .places
                    .into_iter()
                    .map(|p| {
                        // A store may count a place's leavers until it prunes
                        // them: never more than the site.
                        let site = seen.counts;
                        let c = Counts {
                            users: p.counts.users.min(site.users),
                            hidden: p.counts.hidden.min(site.hidden),
                            visitors: p.counts.visitors.min(site.visitors),
                            bots: p.counts.bots.min(site.bots),
                        };
                        PlaceCount {
                            counts: self.hidden_users.counts(c),
                            place: p.place,
                        }
                    })
                    .collect();
                places.sort_unstable_by(|a, b| {
                    let all = |c: &Counts| c.users + c.visitors + c.bots;
                    all(&b.counts)
                        .cmp(&all(&a.counts))
                        .then_with(|| a.place.cmp(&b.place))
                });
                places.into()
            },
            bot_places: seen.bot_places.into(),
            record,
            as_of: Some(now),
            window: self.window,
            version: old.version,
            refreshes: old.refreshes + 1,
        };
        let changed = !view.same_content(&old) || old.as_of.is_none();
        if changed {
            view.version += 1;
        }
        let view = Arc::new(view);
        self.publish(Arc::clone(&view), changed);
        incr(&self.counters.view_refreshes);
        Ok(view)
    }
}

/// Refreshes every `every` until cancelled; a late refresh is skipped, not
/// bursted. Holds the refresher weakly, so dropping every handle ends the task.
pub(crate) async fn run(
    refresher: std::sync::Weak<Refresher>,
    every: Duration,
    cancel: CancellationToken,
) {
    crate::sync::every(refresher, every, cancel, |r| async move {
        // Failures are logged and counted inside; the next refresh retries.
        let _ = r.refresh().await;
    })
    .await;
}
