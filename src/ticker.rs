//! The ticker: ages the sets out, counts them, and raises the record.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::counters::{LogLimiter, incr};
use crate::handle::Shared;
use crate::presence::Counts;
use crate::{Record, Result};

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
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// One tick: prune and count in one round trip, then raise the record if a
    /// count beats it. A raise the record store refuses is kept and retried, so a
    /// peak seen while Postgres was down is written once it is back.
    pub(crate) async fn tick(&self) -> Result<TickReport> {
        let state = &self.ticker;
        let _gate = state.gate.lock().await;
        let now = self.clock.now();
        let cutoff = now.timestamp() - self.window_secs();
        let counts = match self.presence.prune_and_count(cutoff).await {
            Ok(c) => c,
            Err(e) => {
                incr(&self.counters.tick_errors);
                if state.log.allow(30) {
                    tracing::warn!(error = %e, "whos-online: tick could not reach the presence store");
                }
                return Err(e);
            }
        };
        incr(&self.counters.ticks);

        let mut candidate = Record::seen(counts.users, counts.visitors, now);
        if let Some(pending) = lock(&state.pending).take() {
            // The older peak wins ties: its date is the first time it was reached.
            let mut merged = pending;
            merged.raise(&candidate);
            candidate = merged;
        }

        let mut known = *lock(&state.known);
        if let Some(current) = self.current_record().await {
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
        Ok(TickReport {
            counts,
            record: known,
            raised,
            raise_pending: lock(&state.pending).is_some(),
        })
    }

    /// The record from the cache, else from the record store (refilling the
    /// cache); `None` when neither answers.
    pub(crate) async fn current_record(&self) -> Option<Record> {
        let cache_up = match self.presence.cached_record().await {
            Ok(Some(r)) => return Some(r),
            Ok(None) => true,
            Err(e) => {
                incr(&self.counters.cache_errors);
                tracing::debug!(error = %e, "whos-online: record cache unreadable");
                false
            }
        };
        match self.record.load().await {
            Ok(r) => {
                if cache_up {
                    self.refill_cache(&r).await;
                }
                Some(r)
            }
            Err(e) => {
                incr(&self.counters.record_errors);
                tracing::debug!(error = %e, "whos-online: record store unreadable");
                None
            }
        }
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
            () = cancel.cancelled() => return,
            _ = interval.tick() => {
                let Some(shared) = shared.upgrade() else { return };
                // Failures are logged and counted inside; the next tick retries.
                let _ = shared.tick().await;
            }
        }
    }
}
