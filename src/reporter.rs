//! The reporter: drains the queue, coalesces duplicates and writes each batch to
//! the presence store in one round trip.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::Clock;
use crate::counters::{Counters, LogLimiter, add, incr};
use crate::dedupe::Dedupe;
use crate::presence::{Batch, PresenceStore};
use crate::privacy::{Members, Pseudonymizer};

/// Who a request came from, as queued by the layer.
#[derive(Debug)]
pub(crate) enum Who {
    User { name: String, hidden: bool },
    Visitor(IpAddr),
    Bot(IpAddr),
}

/// What travels on the queue: reports, and flush requests that ride behind them so
/// a flush covers everything queued before it.
#[derive(Debug)]
pub(crate) enum Msg {
    Seen(Who),
    Flush(oneshot::Sender<()>),
}

pub(crate) struct Reporter {
    pub(crate) presence: Arc<dyn PresenceStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) counters: Arc<Counters>,
    /// Members waiting to be written; survives failed flushes, up to `max_pending`.
    /// Users map to whether they are hidden (the latest report wins).
    pub(crate) users: HashMap<String, bool>,
    pub(crate) visitors: HashSet<IpAddr>,
    pub(crate) bots: HashSet<IpAddr>,
    pub(crate) max_pending: usize,
    pub(crate) error_log: LogLimiter,
    /// Turns visitor and bot addresses into stored members (keyed hashes by
    /// default); the only place an address becomes a member.
    pub(crate) pseudonyms: Pseudonymizer,
    /// The layer's record of members handed on lately; a member dropped here is
    /// forgotten there, so its next request is reported again.
    pub(crate) dedupe: Arc<Dedupe>,
    /// The last write failed: a full `pending` then drops new members instead of
    /// writing early, so a failing Redis is still tried once per interval.
    pub(crate) failing: bool,
    /// How long a member counts as online: after a UTC day change, yesterday's
    /// pseudonyms are retired for that long (and a minute of slack for clocks).
    pub(crate) window: Duration,
}

impl Reporter {
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        flush_every: Duration,
        cancel: CancellationToken,
    ) {
        // The first write is one interval after start, not at once: there is
        // nothing to write yet, and a report taken in before this task first ran
        // would otherwise be stamped with the time of start.
        let mut interval =
            tokio::time::interval_at(tokio::time::Instant::now() + flush_every, flush_every);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some(msg) => self.take(msg).await,
                    None => break,
                },
                _ = interval.tick() => self.flush().await,
            }
        }
        // Shutdown: refuse new reports, write everything already queued.
        rx.close();
        while let Some(msg) = rx.recv().await {
            self.take(msg).await;
        }
        self.flush().await;
    }

    fn pending(&self) -> usize {
        self.users.len() + self.visitors.len() + self.bots.len()
    }

    /// Takes one message. Writes happen on the interval, on request, when
    /// `max_pending` members are waiting (unless the last write failed) and at
    /// shutdown, so a failing Redis is tried once per interval, not per report.
    async fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Seen(who) => {
                let is_new = match &who {
                    Who::User { name, .. } => !self.users.contains_key(name),
                    Who::Visitor(ip) => !self.visitors.contains(ip),
                    Who::Bot(ip) => !self.bots.contains(ip),
                };
                // Full: write now, unless writes are failing; if that does not
                // make room, drop.
                if is_new && self.pending() >= self.max_pending && !self.failing {
                    self.flush().await;
                }
                if is_new && self.pending() >= self.max_pending {
                    incr(&self.counters.pending_dropped);
                    self.dedupe.forget(&who);
                    return;
                }
                match who {
                    Who::User { name, hidden } => {
                        self.users.insert(name, hidden);
                    }
                    Who::Visitor(ip) => {
                        self.visitors.insert(ip);
                    }
                    Who::Bot(ip) => {
                        self.bots.insert(ip);
                    }
                }
            }
            Msg::Flush(ack) => {
                self.flush().await;
                let _ = ack.send(());
            }
        }
    }

    /// Writes the pending members, all stamped with the current time, in one
    /// round trip. On failure they stay pending and go with the next flush.
    async fn flush(&mut self) {
        if self.pending() == 0 {
            return;
        }
        let started = std::time::Instant::now();
        let span = tracing::debug_span!(
            "whos_online.flush",
            members = self.pending(),
            ok = tracing::field::Empty,
            millis = tracing::field::Empty,
        );
        let ok = self.write_pending().instrument(span.clone()).await;
        self.failing = !ok;
        span.record("ok", ok);
        span.record("millis", started.elapsed().as_millis() as u64);
        crate::metrics::flush(started.elapsed(), &self.counters.snapshot());
    }

    async fn write_pending(&mut self) -> bool {
        let now = self.clock.now();
        // Visitors are stored under the day's pseudonym (or raw, if configured).
        let members = match self
            .pseudonyms
            .members_for(now.date_naive(), &*self.presence)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                self.failed(&e);
                return false;
            }
        };
        let mut batch = Batch::default();
        for (name, &hidden) in &self.users {
            if hidden {
                batch.hidden_users.push(name.clone());
            } else {
                batch.users.push(name.clone());
            }
        }
        batch.visitors = pseudonymise(&self.visitors, &members).await;
        batch.bots = pseudonymise(&self.bots, &members).await;
        if members.is_hashed()
            && let Some(yesterday) = self.yesterdays_members(now).await
        {
            batch.retired_visitors = pseudonymise(&self.visitors, &yesterday).await;
            batch.retired_bots = pseudonymise(&self.bots, &yesterday).await;
        }
        match self.presence.mark_seen(now.timestamp(), &batch).await {
            Ok(()) => {
                incr(&self.counters.flushes);
                add(&self.counters.members_written, batch.len() as u64);
                self.users.clear();
                self.visitors.clear();
                self.bots.clear();
                true
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    /// Shortly after a UTC day change, the previous day's members: a visitor
    /// written now under today's pseudonym may still be online under
    /// yesterday's, and would count twice. Best effort: without yesterday's key,
    /// the old member simply ages out.
    async fn yesterdays_members(&self, now: chrono::DateTime<chrono::Utc>) -> Option<Members> {
        use chrono::Timelike;
        let since_midnight = Duration::from_secs(u64::from(now.num_seconds_from_midnight()));
        if since_midnight >= self.window + Duration::from_secs(60) {
            return None;
        }
        let yesterday = now.date_naive().pred_opt()?;
        self.pseudonyms
            .members_for(yesterday, &*self.presence)
            .await
            .ok()
    }

    fn failed(&self, e: &crate::Error) {
        incr(&self.counters.flush_errors);
        if self.error_log.allow(10) {
            tracing::warn!(error = %e, pending = self.pending(), "whos-online: presence write failed; will retry");
        }
    }
}

/// The stored members for `ips`, letting other tasks on this worker run every
/// 1,024 addresses: a large write (up to `max_pending` members) must not hold
/// up the requests sharing the worker for its whole length.
async fn pseudonymise(ips: &HashSet<IpAddr>, members: &Members) -> Vec<String> {
    const TURN: usize = 1024;
    let mut out = Vec::with_capacity(ips.len());
    for (i, &ip) in ips.iter().enumerate() {
        if i > 0 && i % TURN == 0 {
            tokio::task::yield_now().await;
        }
        out.push(members.member(ip));
    }
    out
}
