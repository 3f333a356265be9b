//! The reporter: drains the queue, coalesces duplicates and writes each batch to
//! the presence store in one round trip.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::counters::{Counters, LogLimiter, add, incr};
use crate::presence::{Batch, PresenceStore};

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
}

impl Reporter {
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        flush_every: Duration,
        cancel: CancellationToken,
    ) {
        let mut interval = tokio::time::interval(flush_every);
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

    /// Takes one message. Writes happen on the interval, on request and at
    /// shutdown only, so a failing Redis is tried once per interval, not per report.
    async fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Seen(who) => {
                let is_new = match &who {
                    Who::User { name, .. } => !self.users.contains_key(name),
                    Who::Visitor(ip) => !self.visitors.contains(ip),
                    Who::Bot(ip) => !self.bots.contains(ip),
                };
                if is_new && self.pending() >= self.max_pending {
                    incr(&self.counters.pending_dropped);
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

    /// The member a visitor or bot address is stored as.
    fn member_of(&self, ip: IpAddr) -> String {
        ip.to_string()
    }

    /// Writes the pending members, all stamped with the current time, in one
    /// round trip. On failure they stay pending and go with the next flush.
    async fn flush(&mut self) {
        if self.pending() == 0 {
            return;
        }
        let mut batch = Batch::default();
        for (name, &hidden) in &self.users {
            if hidden {
                batch.hidden_users.push(name.clone());
            } else {
                batch.users.push(name.clone());
            }
        }
        batch.visitors = self.visitors.iter().map(|ip| self.member_of(*ip)).collect();
        batch.bots = self.bots.iter().map(|ip| self.member_of(*ip)).collect();
        let at = self.clock.unix_secs();
        match self.presence.mark_seen(at, &batch).await {
            Ok(()) => {
                incr(&self.counters.flushes);
                add(&self.counters.members_written, batch.len() as u64);
                self.users.clear();
                self.visitors.clear();
                self.bots.clear();
            }
            Err(e) => {
                incr(&self.counters.flush_errors);
                if self.error_log.allow(10) {
                    tracing::warn!(error = %e, pending = self.pending(), "whos-online: presence write failed; will retry");
                }
            }
        }
    }
}
