//! The reporter: drains the queue, coalesces duplicates and writes each batch to
//! the presence store in one round trip, on a task of its own so that the queue
//! keeps draining while a write is out.

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
    /// What a write needs (each write gets its own clone); also the counters
    /// and the de-dup table the reporter itself uses.
    pub(crate) writer: Writer,
    /// Members waiting to be written; survives failed writes, up to `max_pending`.
    pub(crate) waiting: Waiting,
    pub(crate) max_pending: usize,
    pub(crate) error_log: LogLimiter,
    /// The last write failed: a full `waiting` then drops new members instead of
    /// writing early, so a failing Redis is still tried once per interval.
    pub(crate) failing: bool,
}

/// Members waiting for a write, by kind. Users map to whether they are hidden
/// (the latest report wins).
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    users: HashMap<String, bool>,
    visitors: HashSet<IpAddr>,
    bots: HashSet<IpAddr>,
}

impl Waiting {
    fn len(&self) -> usize {
        self.users.len() + self.visitors.len() + self.bots.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn contains(&self, who: &Who) -> bool {
        match who {
            Who::User { name, .. } => self.users.contains_key(name),
            Who::Visitor(ip) => self.visitors.contains(ip),
            Who::Bot(ip) => self.bots.contains(ip),
        }
    }

    fn insert(&mut self, who: Who) {
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

    fn into_whos(self) -> impl Iterator<Item = Who> {
        let users = self
            .users
            .into_iter()
            .map(|(name, hidden)| Who::User { name, hidden });
        let visitors = self.visitors.into_iter().map(Who::Visitor);
        users
            .chain(visitors)
            .chain(self.bots.into_iter().map(Who::Bot))
    }
}

/// How a write ended; a failed one hands its members back.
struct Written {
    /// Whether there was anything to write; a write of nothing says nothing
    /// about the store.
    attempted: bool,
    result: crate::Result<()>,
    unwritten: Waiting,
}

/// One write at a time runs on a task of its own, so the reporter keeps taking
/// reports from the queue while it is out.
type InFlight = tokio::task::JoinHandle<Written>;

/// The write out, if any, and the flush requests waiting on writes.
#[derive(Default)]
struct Writes {
    in_flight: Option<InFlight>,
    /// Answered when the write in flight ends.
    acks: Vec<oneshot::Sender<()>>,
    /// Came while a write was out: answered after one more write.
    acks_next: Vec<oneshot::Sender<()>>,
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
        let mut w = Writes::default();
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                done = async { w.in_flight.as_mut().expect("guarded").await }, if w.in_flight.is_some() => {
                    w.in_flight = None;
                    self.ended(&mut w, done);
                }
                msg = rx.recv() => match msg {
                    Some(Msg::Seen(who)) => self.seen(&mut w, who).await,
                    Some(Msg::Flush(ack)) => {
                        if w.in_flight.is_none() {
                            w.in_flight = Some(self.start_write());
                            w.acks.push(ack);
                        } else {
                            w.acks_next.push(ack);
                        }
                    }
                    None => break,
                },
                _ = interval.tick(), if w.in_flight.is_none() => {
                    if !self.waiting.is_empty() {
                        w.in_flight = Some(self.start_write());
                    }
                }
            }
        }
        // Shutdown: refuse new reports, let the writes out end, write
        // everything already queued.
        rx.close();
        self.settle(&mut w).await;
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Seen(who) => self.seen(&mut w, who).await,
                Msg::Flush(ack) => w.acks_next.push(ack),
            }
        }
        self.settle(&mut w).await;
        if !self.waiting.is_empty() || !w.acks_next.is_empty() {
            self.write_for_next(&mut w);
            self.settle(&mut w).await;
        }
    }

    /// Takes one report. When `max_pending` members already wait, a new one
    /// first waits for the write out, if any, and then has them written (the
    /// queue holds later reports meanwhile); only if writes are failing is it
    /// dropped.
    async fn seen(&mut self, w: &mut Writes, who: Who) {
        if !self.failing && self.full_for(&who) {
            self.await_write(w).await;
            if !self.failing && self.full_for(&who) && w.in_flight.is_none() {
                w.in_flight = Some(self.start_write());
            }
        }
        self.take(who);
    }

    /// Waits for the write out, if any, and takes its end.
    async fn await_write(&mut self, w: &mut Writes) {
        if let Some(write) = w.in_flight.take() {
            let done = write.await;
            self.ended(w, done);
        }
    }

    /// Waits until no write is out, answering flush requests on the way.
    async fn settle(&mut self, w: &mut Writes) {
        while w.in_flight.is_some() {
            self.await_write(w).await;
        }
    }

    /// A write ended: take its outcome, answer the flush requests it covered,
    /// and start the one more write that later requests wait for.
    fn ended(&mut self, w: &mut Writes, done: Result<Written, tokio::task::JoinError>) {
        self.finished(done);
        for ack in w.acks.drain(..) {
            let _ = ack.send(());
        }
        if !w.acks_next.is_empty() {
            self.write_for_next(w);
        }
    }

    /// Starts the write that the flush requests in `acks_next` wait for.
    fn write_for_next(&mut self, w: &mut Writes) {
        w.in_flight = Some(self.start_write());
        w.acks = std::mem::take(&mut w.acks_next);
    }

    /// Whether `who` is new and there is no room for it.
    fn full_for(&self, who: &Who) -> bool {
        self.waiting.len() >= self.max_pending && !self.waiting.contains(who)
    }

    /// Keeps `who` waiting; with `max_pending` members already waiting a new one
    /// is dropped, counted, and forgotten by the de-dup table.
    fn take(&mut self, who: Who) {
        if self.full_for(&who) {
            incr(&self.writer.counters.pending_dropped);
            self.writer.dedupe.forget(&who);
            return;
        }
        self.waiting.insert(who);
    }

    /// Hands everything waiting to a write on a task of its own.
    fn start_write(&mut self) -> InFlight {
        let members = std::mem::take(&mut self.waiting);
        tokio::spawn(self.writer.clone().write(members))
    }

    /// Takes a write's outcome: a failed write's members wait again, as room
    /// allows (what came in meanwhile stays: it is newer).
    fn finished(&mut self, done: Result<Written, tokio::task::JoinError>) {
        let written = match done {
            Ok(w) => w,
            Err(e) => {
                // Only a panic in a store, or a runtime shutting down: that
                // write's members are lost.
                self.failing = true;
                incr(&self.writer.counters.flush_errors);
                tracing::error!(error = %e, "whos-online: a presence write task ended abnormally");
                return;
            }
        };
        if !written.attempted {
            return;
        }
        match written.result {
            Ok(()) => self.failing = false,
            Err(e) => {
                self.failing = true;
                incr(&self.writer.counters.flush_errors);
                for who in written.unwritten.into_whos() {
                    if !self.waiting.contains(&who) {
                        self.take(who);
                    }
                }
                if self.error_log.allow(10) {
                    tracing::warn!(error = %e, pending = self.waiting.len(), "whos-online: presence write failed; will retry");
                }
            }
        }
    }
}

/// What a write needs, shared with the reporter.
#[derive(Clone)]
pub(crate) struct Writer {
    pub(crate) presence: Arc<dyn PresenceStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) counters: Arc<Counters>,
    /// Turns visitor and bot addresses into stored members (keyed hashes by
    /// default); the only place an address becomes a member.
    pub(crate) pseudonyms: Arc<Pseudonymizer>,
    /// How long a member counts as online: after a UTC day change, yesterday's
    /// pseudonyms are retired for that long (and a minute of slack for clocks).
    pub(crate) window: Duration,
    /// The layer's record of members handed on lately: a member the reporter
    /// drops is forgotten there, so its next request is reported again, and
    /// all are when the store has lost its data.
    pub(crate) dedupe: Arc<Dedupe>,
}

impl Writer {
    /// Writes `members`, all stamped with the current time, in one round trip.
    async fn write(self, members: Waiting) -> Written {
        if members.is_empty() {
            return Written {
                attempted: false,
                result: Ok(()),
                unwritten: members,
            };
        }
        let started = std::time::Instant::now();
        let span = tracing::debug_span!(
            "whos_online.flush",
            members = members.len(),
            ok = tracing::field::Empty,
            millis = tracing::field::Empty,
        );
        let result = self.write_members(&members).instrument(span.clone()).await;
        span.record("ok", result.is_ok());
        span.record("millis", started.elapsed().as_millis() as u64);
        crate::metrics::flush(started.elapsed(), &self.counters.snapshot());
        Written {
            attempted: true,
            unwritten: if result.is_ok() {
                Waiting::default()
            } else {
                members
            },
            result,
        }
    }

    async fn write_members(&self, members: &Waiting) -> crate::Result<()> {
        let now = self.clock.now();
        // Visitors are stored under the day's pseudonym (or raw, if configured).
        let today = self
            .pseudonyms
            .members_for(now.date_naive(), &*self.presence)
            .await?;
        let mut batch = Batch::default();
        for (name, &hidden) in &members.users {
            if hidden {
                batch.hidden_users.push(name.clone());
            } else {
                batch.users.push(name.clone());
            }
        }
        batch.visitors = pseudonymise(&members.visitors, &today).await;
        batch.bots = pseudonymise(&members.bots, &today).await;
        if today.is_hashed()
            && let Some(yesterday) = self.yesterdays_members(now).await
        {
            batch.retired_visitors = pseudonymise(&members.visitors, &yesterday).await;
            batch.retired_bots = pseudonymise(&members.bots, &yesterday).await;
        }
        self.presence.mark_seen(now.timestamp(), &batch).await?;
        incr(&self.counters.flushes);
        add(&self.counters.members_written, batch.len() as u64);
        if self.presence.take_data_loss() {
            tracing::warn!(
                "whos-online: the presence store lost its data; members are written again at their next request"
            );
            self.dedupe.clear();
            self.pseudonyms.forget();
        }
        Ok(())
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
