//! The ticker: ages the sets out, counts them, and raises the record.
//!
//! With Redis, one instance at a time runs the background tick: the holder of the
//! tick lease (see `presence/redis/lease.rs`). The others skip the prune and count, but still
//! retry a raise of their own that the record store refused earlier, so a peak
//! one of them saw is never lost when the lease moves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Days, NaiveDate, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::{Clock, Settle};
use crate::counters::Counters;
use crate::counters::{LogLimiter, incr};
use crate::presence::{Counts, HiddenUsers, PresenceStore, TickLease};
use crate::record::{CachingRecord, RecordStore};
use crate::record::{Day, HistoryStore, MAX_HISTORY_READ, RecordReset, merge_day};
use crate::sync::lock;
use crate::{Error, Record, Result};

/// What one tick saw and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TickReport {
    /// Members within the window after pruning.
    pub counts: Counts,
    /// The record as known after the tick: as read this tick from the cache or
    /// the record store, or as stored by this tick's raise; when neither store
    /// could be read, the highest record this instance saw before.
    pub record: Record,
    /// Whether this tick raised the stored record.
    pub raised: bool,
    /// Whether a raise is still waiting for the record store to come back.
    pub raise_pending: bool,
}

/// State kept between ticks.
#[derive(Debug, Default)]
pub(crate) struct TickerState {
    /// Ticks of one instance never overlap (the interval and `tick_now`), nor
    /// with a reset of the record.
    gate: tokio::sync::Mutex<()>,
    /// The highest record this instance has seen, of the newest generation seen
    /// (see [`Record::merge`]): what a tick reports when no store can be read,
    /// and the generation its raises carry. Never a reason to skip a raise: that
    /// is decided against the record read at each tick.
    known: Mutex<Record>,
    /// A raise the record store has not taken yet; retried every tick. Touched
    /// under the gate only.
    pending: Mutex<Option<Record>>,
    log: LogLimiter,
    /// This instance's id; the value it writes into the tick lease.
    instance_id: String,
    /// The tick lease, when the presence store is Redis; `None` ticks always.
    lease: Option<TickLease>,
    /// Whether this instance held the lease at its last background tick.
    holds_lease: AtomicBool,
    /// The history as last read from its store, and when.
    history: ArcSwapOption<KeptHistory>,
    /// The day of this instance's last retention run of the history.
    retained_on: Mutex<Option<NaiveDate>>,
    /// Days a tick saw but the history store did not take (it was down):
    /// raised again with the next tick's, so a peak of the outage is kept.
    history_pending: Mutex<Vec<Day>>,
    /// Whether the record store's one-off work is done.
    prepared: AtomicBool,
    /// Today's peaks as this instance saw them, at every tick and every
    /// refresh of the view, each with the time it was first seen: written with
    /// the next tick's raise (so a peak between ticks reaches the day's row),
    /// and merged into what [`WhosOnline::history`](crate::WhosOnline::history)
    /// serves meanwhile.
    live_day: Mutex<Option<Day>>,
}

/// The daily history as a tick last read it: the stored days of the last
/// [`MAX_HISTORY_READ`] days, oldest first, and when they were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeptHistory {
    pub(crate) days: Vec<Day>,
    pub(crate) as_of: DateTime<Utc>,
}

impl TickerState {
    pub(crate) fn new(instance_id: String, lease: Option<TickLease>) -> Self {
        Self {
            instance_id,
            lease,
            ..Self::default()
        }
    }
}

/// Whether `stored` carries a count of `candidate`, with its date: the raise
/// of `candidate` is what put it there.
fn carries(stored: &Record, candidate: &Record) -> bool {
    (candidate.max_users > 0
        && stored.max_users == candidate.max_users
        && stored.max_users_date == candidate.max_users_date)
        || (candidate.max_visitors > 0
            && stored.max_visitors == candidate.max_visitors
            && stored.max_visitors_date == candidate.max_visitors_date)
}

/// What the ticker needs, given by the wiring: the stores, the clock and the
/// settings it works with, and its state between ticks.
pub(crate) struct Ticker {
    pub(crate) presence: Arc<dyn PresenceStore>,
    /// The record store behind its cache.
    pub(crate) record: Arc<CachingRecord>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The server clock's first sync, waited for before the clock is read.
    pub(crate) settle: Settle,
    pub(crate) window: Duration,
    pub(crate) counters: Arc<Counters>,
    pub(crate) hidden_users: HiddenUsers,
    /// Where the daily history is kept, if it is.
    pub(crate) history: Option<Arc<dyn HistoryStore>>,
    /// How many days the history keeps.
    pub(crate) history_days: u32,
    pub(crate) state: TickerState,
}

impl Ticker {
    fn window_secs(&self) -> i64 {
        i64::try_from(self.window.as_secs()).unwrap_or(i64::MAX)
    }

    /// This instance's id: the value it writes into the tick lease.
    pub(crate) fn instance_id(&self) -> &str {
        &self.state.instance_id
    }

    /// Whether this instance held the tick lease at its last background tick.
    pub(crate) fn holds_lease(&self) -> bool {
        self.state.holds_lease.load(Ordering::Relaxed)
    }

    /// One tick: prune and count in one round trip, then raise the record if a
    /// count beats it. A raise the record store refuses is kept and retried, so a
    /// peak seen while Postgres was down is written once it is back.
    pub(crate) async fn tick(&self) -> Result<TickReport> {
        let span = tracing::debug_span!(
            "whos_online.tick",
            users = tracing::field::Empty,
            visitors = tracing::field::Empty,
            bots = tracing::field::Empty,
            raised = tracing::field::Empty,
            millis = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let result = self.tick_inner().instrument(span.clone()).await;
        if let Ok(r) = &result {
            span.record("users", r.counts.users);
            span.record("visitors", r.counts.visitors);
            span.record("bots", r.counts.bots);
            span.record("raised", r.raised);
        }
        span.record("millis", started.elapsed().as_millis() as u64);
        result
    }

    async fn tick_inner(&self) -> Result<TickReport> {
        let state = &self.state;
        let _gate = state.gate.lock().await;
        let started = std::time::Instant::now();
        self.settle.wait().await;
        let before = self.clock.now();
        let cutoff = before.timestamp() - self.window_secs();
        // The distinct members of today and of yesterday, whose final count a
        // tick after midnight still reads.
        let today = before.date_naive();
        let days = [today.pred_opt().unwrap_or(today), today];
        let tally = match self.presence.tally(cutoff, &days, self.hidden_users).await {
            Ok(t) => t,
            Err(e) => {
                incr(&self.counters.tick_errors);
                if state.log.allow(30) {
                    tracing::warn!(error = %e, "whos-online: tick could not reach the presence store");
                }
                // Postgres may be up while Redis is not: a raise kept from an
                // earlier tick is still written, and the history read.
                self.raise_pending().await;
                self.update_history(&[], false).await;
                return Err(e);
            }
        };
        let counts = self.hidden_users.counts(tally.counts);
        incr(&self.counters.ticks);
        // Read after the round trip: with server time, the first one set the clock.
        let now = self.clock.now();

        // The record store's one-off work (taking over the record of an
        // earlier version) comes before its record is read, cached or not.
        if !state.prepared.load(Ordering::Relaxed) {
            match self.record.prepare().await {
                Ok(()) => state.prepared.store(true, Ordering::Relaxed),
                Err(e) => {
                    incr(&self.counters.record_errors);
                    tracing::debug!(error = %e, "whos-online: record store not prepared; retried at the next tick");
                }
            }
        }
        // A cache write that failed earlier goes first, so the read below sees it.
        self.record.retry_refill().await;
        // Postgres is the truth: whether to raise is decided against the record
        // read now, never against one this instance saw earlier, which a reset
        // may have lowered since.
        let current = self.current_record().await.ok();
        if let Some(current) = &current {
            lock(&state.known).merge(current);
        }
        let known = *lock(&state.known);
        let fresh = Record {
            generation: known.generation,
            ..Record::seen(counts.users, counts.visitors, now)
        };
        let mut candidate = fresh;
        if let Some(pending) = lock(&state.pending).take() {
            if pending.generation < fresh.generation {
                self.drop_stale(&pending);
            } else {
                // The older peak wins ties: its date is the first time it was reached.
                let mut merged = pending;
                merged.raise(&fresh);
                candidate = merged;
            }
        }

        // When no store can be read, the raise is simply tried: it is atomic
        // and raise-only.
        let mut record = current.unwrap_or(known);
        let mut raised = false;
        if current.unwrap_or_default().is_beaten_by(&candidate) {
            let (stored, rose) = self.write_raise(candidate, Some(fresh)).await;
            if let Some(stored) = stored {
                record.merge(&stored);
            }
            raised = rose;
        }
        // Today's peaks so far (this tick's counts, and the higher ones the
        // view saw since, at the time first seen), and the distinct members of
        // both days.
        let mut seen = vec![self.saw(counts, now)];
        for d in &tally.distinct {
            let distinct = Day {
                distinct_users: d.users,
                distinct_visitors: d.visitors,
                ..Day::empty(d.day)
            };
            merge_day(&mut seen, &distinct);
        }
        self.update_history(&seen, true).await;
        let report = TickReport {
            counts,
            record,
            raised,
            raise_pending: lock(&state.pending).is_some(),
        };
        crate::metrics::tick(
            &report.counts,
            &report.record,
            started.elapsed(),
            &self.counters.snapshot(),
        );
        Ok(report)
    }

    /// Raises `seen` into the history (raise-only), deletes the days older than
    /// [`history_days`](crate::Builder::history_days) when `retain` and not
    /// done yet today, and keeps the last [`MAX_HISTORY_READ`] days as read
    /// back, all in one statement of the history store. A failure is counted
    /// and logged; the last good copy stays. The caller holds the gate.
    async fn update_history(&self, seen: &[Day], retain: bool) {
        let Some(store) = &self.history else { return };
        let state = &self.state;
        let now = self.clock.now();
        let today = now.date_naive();
        let keep_from = (retain && *lock(&state.retained_on) != Some(today)).then(|| {
            today
                .checked_sub_days(Days::new(u64::from(self.history_days.max(1) - 1)))
                .unwrap_or(NaiveDate::MIN)
        });
        let from = today
            .checked_sub_days(Days::new(u64::from(MAX_HISTORY_READ - 1)))
            .unwrap_or(NaiveDate::MIN);
        // What an earlier tick could not write goes with this one's.
        let mut seen_all = std::mem::take(&mut *lock(&state.history_pending));
        for d in seen {
            merge_day(&mut seen_all, d);
        }
        match store.raise_days(&seen_all, keep_from, from).await {
            Ok(days) => {
                if keep_from.is_some() {
                    *lock(&state.retained_on) = Some(today);
                    incr(&self.counters.history_retentions);
                }
                state
                    .history
                    .store(Some(Arc::new(KeptHistory { days, as_of: now })));
            }
            Err(e) => {
                // Kept for the next tick: at most the days of the outage.
                seen_all.retain(|d| d.day >= from);
                *lock(&state.history_pending) = seen_all;
                incr(&self.counters.history_errors);
                if state.log.allow(30) {
                    tracing::warn!(error = %e, "whos-online: history store failed; serving the last good copy");
                }
            }
        }
    }

    /// Notes `counts`, seen at `at`, among the peaks of `at`'s day; returns the
    /// day's peaks so far. A count moves its time only when it rises, so each
    /// time is when this instance first saw that count.
    pub(crate) fn saw(&self, counts: Counts, at: DateTime<Utc>) -> Day {
        let seen = Day::seen(counts.users, counts.visitors, counts.bots, at);
        let mut live = lock(&self.state.live_day);
        match live.as_mut() {
            Some(day) if day.day == seen.day => {
                day.raise(&seen);
                *day
            }
            // The clock went back a day: nothing to keep.
            Some(day) if day.day > seen.day => seen,
            Some(day) => {
                // A new day: what the old one saw since its last tick waits
                // for the next tick's write.
                let ended = std::mem::replace(day, seen);
                drop(live);
                lock(&self.state.history_pending).push(ended);
                seen
            }
            None => *live.insert(seen),
        }
    }

    /// Today's peaks as this instance saw them (see [`saw`](Self::saw)).
    pub(crate) fn live_day(&self) -> Option<Day> {
        *lock(&self.state.live_day)
    }

    /// The history as last read, if it ever was.
    pub(crate) fn kept_history(&self) -> Option<Arc<KeptHistory>> {
        self.state.history.load_full()
    }

    /// Raises the stored record to `candidate`; the caller holds the gate.
    /// Returns the record as stored, when the store answered, and whether this
    /// raise put a count there. A store that fails keeps the candidate pending.
    ///
    /// A store reset since this instance last read it refuses the candidate
    /// (of an older generation); then `fresh`, the counts of this tick, is
    /// raised again alone under the new generation, and any older peak in the
    /// candidate is dropped.
    async fn write_raise(
        &self,
        candidate: Record,
        fresh: Option<Record>,
    ) -> (Option<Record>, bool) {
        let state = &self.state;
        let (mut candidate, mut fresh) = (candidate, fresh);
        loop {
            let stored = match self.record.raise(&candidate).await {
                Ok(stored) => stored,
                Err(e) => {
                    incr(&self.counters.record_errors);
                    if state.log.allow(30) {
                        tracing::warn!(error = %e, "whos-online: record store failed; raise kept for the next tick");
                    }
                    *lock(&state.pending) = Some(candidate);
                    return (None, false);
                }
            };
            lock(&state.known).merge(&stored);
            if stored.generation > candidate.generation {
                self.drop_stale(&candidate);
                if let Some(f) = fresh.take() {
                    candidate = Record {
                        generation: stored.generation,
                        ..f
                    };
                    if stored.is_beaten_by(&candidate) {
                        continue;
                    }
                }
                return (Some(stored), false);
            }
            let raised = carries(&stored, &candidate);
            if raised {
                incr(&self.counters.record_raises);
                tracing::info!(
                    max_users = stored.max_users,
                    max_visitors = stored.max_visitors,
                    "whos-online: record raised"
                );
            }
            return (Some(stored), raised);
        }
    }

    /// Raises the record to `fresh` (counts seen outside a tick, by the view's
    /// refresh) through the same atomic, raise-only write as a tick; returns the
    /// record as stored. `None` when the store failed (the raise is then kept
    /// and retried at the next tick) or already has a raise waiting for it (so
    /// a store that is down gets no more attempts than one per tick).
    pub(crate) async fn raise_seen(&self, fresh: Record) -> Option<Record> {
        let state = &self.state;
        let _gate = state.gate.lock().await;
        let known = *lock(&state.known);
        let fresh = Record {
            generation: known.generation.max(fresh.generation),
            ..fresh
        };
        {
            let mut pending = lock(&state.pending);
            if let Some(kept) = pending.as_mut() {
                if kept.generation < fresh.generation {
                    // Kept from before a reset: the reset decided; this peak
                    // is of the new generation and waits in its place.
                    self.drop_stale(kept);
                    *kept = fresh;
                } else {
                    kept.raise(&fresh);
                }
                return None;
            }
        }
        self.write_raise(fresh, Some(fresh)).await.0
    }

    /// Writes a raise the record store refused earlier, if any; the caller holds
    /// the gate. Whether it was written.
    async fn raise_pending(&self) -> bool {
        let state = &self.state;
        let Some(pending) = lock(&state.pending).take() else {
            return false;
        };
        if pending.generation < lock(&state.known).generation {
            self.drop_stale(&pending);
            return false;
        }
        self.write_raise(pending, None).await.1
    }

    /// A raise of a generation before a reset: the reset decided what the record
    /// is, so it is not written.
    fn drop_stale(&self, raise: &Record) {
        incr(&self.counters.stale_raises_dropped);
        tracing::info!(
            max_users = raise.max_users,
            max_visitors = raise.max_visitors,
            "whos-online: a raise from before a reset of the record is dropped"
        );
    }

    /// A background tick: the full tick when this instance holds the tick lease
    /// (or there is none, or Redis cannot say), else only the retries of a kept
    /// raise and of a failed cache write.
    async fn background_tick(&self) {
        let state = &self.state;
        let ticks = match &state.lease {
            None => true,
            Some(lease) => match lease.acquire().await {
                Ok(held) => {
                    state.holds_lease.store(held, Ordering::Relaxed);
                    held
                }
                Err(e) => {
                    // Fail open: ticking twice is harmless, and the tick itself
                    // reports the failing store.
                    tracing::debug!(error = %e, "whos-online: tick lease unreadable; ticking");
                    state.holds_lease.store(false, Ordering::Relaxed);
                    true
                }
            },
        };
        if ticks {
            // Failures are logged and counted inside; the next tick retries.
            let _ = self.tick().await;
        } else {
            let _gate = state.gate.lock().await;
            if lock(&state.pending).is_some() || self.record.refill_waiting() {
                self.raise_pending().await;
                self.record.retry_refill().await;
            }
            // The instance that ticks raises the history; this one reads it.
            self.update_history(&[], false).await;
        }
    }

    /// Lets the lease go at shutdown, so another instance takes over at once.
    async fn release_lease(&self) {
        let state = &self.state;
        if let Some(lease) = &state.lease
            && state.holds_lease.swap(false, Ordering::Relaxed)
            && let Err(e) = lease.release().await
        {
            tracing::debug!(error = %e, "whos-online: tick lease not released; it will expire");
        }
    }

    /// The record from the cache, else from the record store (refilling the
    /// cache); an error only when neither answers.
    pub(crate) async fn current_record(&self) -> Result<Record> {
        self.record.load().await.inspect_err(|e| {
            incr(&self.counters.record_errors);
            tracing::debug!(error = %e, "whos-online: record store unreadable");
        })
    }

    /// Lowers the record (see [`WhosOnline::reset_record`]).
    pub(crate) async fn reset_record(&self, to: RecordReset) -> Result<Record> {
        let state = &self.state;
        let _gate = state.gate.lock().await;
        let (users, visitors) = match to {
            RecordReset::To { users, visitors } => (users, visitors),
            RecordReset::ToCurrentCounts => {
                self.settle.wait().await;
                let cutoff = self.clock.unix_secs() - self.window_secs();
                let seen = self.presence.snapshot(cutoff, 0).await?;
                let counts = self.hidden_users.counts(seen.counts);
                (counts.users, counts.visitors)
            }
        };
        let now = self.clock.now();
        let mut result = self.record.reset(&Record::seen(users, visitors, now)).await;
        if let (
            RecordReset::ToCurrentCounts,
            Err(Error::ResetAboveRecord {
                max_users,
                max_visitors,
                ..
            }),
        ) = (to, &result)
        {
            // More online than the record: that count stays (the next tick raises it).
            let clamped = Record::seen(users.min(*max_users), visitors.min(*max_visitors), now);
            result = self.record.reset(&clamped).await;
        }
        let stored = result.inspect_err(|e| {
            if !matches!(e, Error::ResetAboveRecord { .. }) {
                incr(&self.counters.record_errors);
            }
        })?;
        incr(&self.counters.record_resets);
        lock(&state.known).merge(&stored);
        if let Some(stale) = lock(&state.pending).take_if(|p| p.generation < stored.generation) {
            self.drop_stale(&stale);
        }
        tracing::info!(
            max_users = stored.max_users,
            max_visitors = stored.max_visitors,
            generation = stored.generation,
            "whos-online: record reset"
        );
        Ok(stored)
    }
}

/// Ticks every `every` until cancelled; a late tick is skipped, not bursted.
/// Holds the handle weakly, so dropping every handle without a shutdown still
/// ends the task.
pub(crate) async fn run(
    ticker: std::sync::Weak<Ticker>,
    every: Duration,
    cancel: CancellationToken,
) {
    let last = crate::sync::every(ticker, every, cancel, |t| async move {
        t.background_tick().await;
    })
    .await;
    if let Some(ticker) = last {
        ticker.release_lease().await;
    }
}
