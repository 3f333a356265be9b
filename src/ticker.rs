//! The ticker: ages the sets out, counts them, and raises the record.
//!
//! With Redis, one instance at a time runs the background tick: the holder of the
//! tick lease (see `lease.rs`). The others skip the prune and count, but still
//! retry a raise of their own that the record store refused earlier, so a peak
//! one of them saw is never lost when the lease moves.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::counters::{LogLimiter, incr};
use crate::handle::Shared;
use crate::lease::TickLease;
use crate::presence::Counts;
use crate::{Record, Result, WhosOnline};

/// What one tick saw and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TickReport {
    /// Members within the window after pruning.
    pub counts: Counts,
    /// The record as known after the tick.
    pub record: Record,
    /// Whether this tick raised the stored record.
    pub raised: bool,
    /// Whether a raise is still waiting for the record store to come back.
    pub raise_pending: bool,
}

/// State kept between ticks.
#[derive(Debug, Default)]
pub(crate) struct TickerState {
    /// Ticks of one instance never overlap (the interval and `tick_now`).
    gate: tokio::sync::Mutex<()>,
    /// The highest record this instance has seen: the floor when stores fail.
    known: Mutex<Record>,
    /// A raise the record store has not taken yet; retried every tick.
    pending: Mutex<Option<Record>>,
    log: LogLimiter,
    /// This instance's id; the value it writes into the tick lease.
    instance_id: String,
    /// The tick lease, when the presence store is Redis; `None` ticks always.
    lease: Option<TickLease>,
    /// Whether this instance held the lease at its last background tick.
    holds_lease: AtomicBool,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
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
        let state = &self.ticker;
        let _gate = state.gate.lock().await;
        let started = std::time::Instant::now();
        let cutoff = self.clock.unix_secs() - self.window_secs();
        let counts = match self.presence.prune_and_count(cutoff).await {
            Ok(c) => c,
            Err(e) => {
                incr(&self.counters.tick_errors);
                if state.log.allow(30) {
                    tracing::warn!(error = %e, "whos-online: tick could not reach the presence store");
                }
                // Postgres may be up while Redis is not: a raise kept from an
                // earlier tick is still written.
                self.raise_pending().await;
                return Err(e);
            }
        };
        incr(&self.counters.ticks);
        // Read after the round trip: with server time, the first one set the clock.
        let now = self.clock.now();

        let mut candidate = Record::seen(counts.users, counts.visitors, now);
        if let Some(pending) = lock(&state.pending).take() {
            // The older peak wins ties: its date is the first time it was reached.
            let mut merged = pending;
            merged.raise(&candidate);
            candidate = merged;
        }

        let mut known = *lock(&state.known);
        if let Ok(current) = self.current_record().await {
            known.raise(&current);
        }

        let mut raised = false;
        if known.is_beaten_by(&candidate) {
            match self.record.raise(&candidate).await {
                Ok(stored) => {
                    raised = true;
                    incr(&self.counters.record_raises);
                    known.raise(&stored);
                    self.refill_cache(&stored).await;
                    tracing::info!(
                        max_users = stored.max_users,
                        max_visitors = stored.max_visitors,
                        "whos-online: record raised"
                    );
                }
                Err(e) => {
                    incr(&self.counters.record_errors);
                    if state.log.allow(30) {
                        tracing::warn!(error = %e, "whos-online: record store failed; raise kept for the next tick");
                    }
                    *lock(&state.pending) = Some(candidate);
                }
            }
        }
        lock(&state.known).raise(&known);
        let report = TickReport {
            counts,
            record: known,
            raised,
            raise_pending: lock(&state.pending).is_some(),
        };
        crate::metrics::tick(&report, started.elapsed(), &self.counters.snapshot());
        Ok(report)
    }

    /// Writes a raise the record store refused earlier, if any; the caller holds
    /// the gate. Whether it was written.
    async fn raise_pending(&self) -> bool {
        let state = &self.ticker;
        let Some(pending) = lock(&state.pending).take() else {
            return false;
        };
        match self.record.raise(&pending).await {
            Ok(stored) => {
                incr(&self.counters.record_raises);
                lock(&state.known).raise(&stored);
                self.refill_cache(&stored).await;
                tracing::info!(
                    max_users = stored.max_users,
                    max_visitors = stored.max_visitors,
                    "whos-online: kept record raise written"
                );
                true
            }
            Err(e) => {
                incr(&self.counters.record_errors);
                if state.log.allow(30) {
                    tracing::warn!(error = %e, "whos-online: record store failed; raise kept for the next tick");
                }
                let mut slot = lock(&state.pending);
                match slot.as_mut() {
                    Some(newer) => {
                        let mut merged = pending;
                        merged.raise(newer);
                        *newer = merged;
                    }
                    None => *slot = Some(pending),
                }
                false
            }
        }
    }

    /// A background tick: the full tick when this instance holds the tick lease
    /// (or there is none, or Redis cannot say), else only the retry of a kept raise.
    async fn background_tick(&self) {
        let state = &self.ticker;
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
        } else if lock(&state.pending).is_some() {
            let _gate = state.gate.lock().await;
            self.raise_pending().await;
        }
    }

    /// Lets the lease go at shutdown, so another instance takes over at once.
    async fn release_lease(&self) {
        let state = &self.ticker;
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
        let cache_up = match self.presence.cached_record().await {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => true,
            Err(e) => {
                incr(&self.counters.cache_errors);
                tracing::debug!(error = %e, "whos-online: record cache unreadable");
                false
            }
        };
        let r = self.record.load().await.inspect_err(|e| {
            incr(&self.counters.record_errors);
            tracing::debug!(error = %e, "whos-online: record store unreadable");
        })?;
        if cache_up {
            self.refill_cache(&r).await;
        }
        Ok(r)
    }

    async fn refill_cache(&self, record: &Record) {
        if let Err(e) = self.presence.cache_record(record, self.cache_ttl).await {
            incr(&self.counters.cache_errors);
            tracing::debug!(error = %e, "whos-online: record cache not written");
        }
    }
}

/// Ticks every `every` until cancelled; a late tick is skipped, not bursted.
/// Holds the handle weakly, so dropping every handle without a shutdown still
/// ends the task.
pub(crate) async fn run(
    shared: std::sync::Weak<Shared>,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            _ = interval.tick() => {
                let Some(shared) = shared.upgrade() else { return };
                shared.background_tick().await;
            }
        }
    }
    if let Some(shared) = shared.upgrade() {
        shared.release_lease().await;
    }
}

impl WhosOnline {
    /// This instance's id: the value it writes into the tick lease
    /// (`{prefix}:tick-lease`) when it is the one that ticks.
    pub fn instance_id(&self) -> &str {
        &self.shared.ticker.instance_id
    }

    /// Whether this instance held the tick lease at its last background tick, so
    /// that it is the one pruning and raising the record. Always false without a
    /// lease (in-memory presence, or the lease turned off): every instance ticks.
    pub fn holds_tick_lease(&self) -> bool {
        self.shared.ticker.holds_lease.load(Ordering::Relaxed)
    }
}
