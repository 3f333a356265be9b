//! The reporter: drains the queue, coalesces duplicates and writes each batch to
//! the presence store in one round trip, on a task of its own so that the queue
//! keeps draining while a write is out.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::{Clock, Settle};
use crate::counters::{Counters, LogLimiter, add, incr};
use crate::dedupe::Dedupe;
use crate::presence::{Batch, DaySecrets, Marked, MemberKind, Placed, PresenceStore};
use crate::privacy::{Members, Pseudonymizer};
use crate::queue::{Ack, Msg};
use crate::who::{BotName, Place, Who};

pub(crate) struct Reporter {
    /// What a write needs (each write gets its own clone); also the counters
    /// and the de-dup table the reporter itself uses.
    pub(crate) writer: Writer,
    /// Members waiting to be written; survives failed writes, up to `max_pending`.
    pub(crate) waiting: Waiting,
    pub(crate) max_pending: usize,
    pub(crate) error_log: LogLimiter,
    /// The last write failed, with this error: a full `waiting` then drops new
    /// members instead of writing early, and a flush waits for the next
    /// scheduled write instead of adding one, so a failing store is tried once
    /// per interval.
    pub(crate) failing: Option<Arc<crate::Error>>,
    /// How long shutdown keeps trying to write what is left.
    pub(crate) shutdown_grace: Duration,
    /// Users who left lately, and when: a report of them that arrives within
    /// [`LEFT_GRACE_MS`] is of a request made before they left (the logout
    /// request itself, reported once its response is sent), and is void.
    /// Unix milliseconds on the configured clock.
    pub(crate) left_lately: HashMap<String, i64>,
}

/// How long after `user_left` a report of that user is taken for one of a
/// request made before it, in milliseconds.
const LEFT_GRACE_MS: i64 = 2_000;

/// Members waiting for a write, by kind. Users map to whether they are hidden
/// and the address they came from (the latest report wins); bots to their name.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    users: HashMap<String, UserSeen>,
    /// Visitors, and their latest place.
    visitors: HashMap<IpAddr, Option<Place>>,
    /// Bots, with their name and latest place.
    bots: HashMap<IpAddr, (BotName, Option<Place>)>,
    /// Users who left since their last report: never also in `users`.
    left: HashSet<String>,
}

impl Waiting {
    fn len(&self) -> usize {
        self.users.len() + self.visitors.len() + self.bots.len() + self.left.len()
    }

    /// `name` logged out: a report of them waiting is void, and they leave
    /// the sets at the next write.
    fn leave(&mut self, name: String) {
        self.users.remove(&name);
        self.left.insert(name);
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn contains(&self, who: &Who) -> bool {
        match who {
            Who::User { name, .. } => self.users.contains_key(name),
            Who::Visitor(ip) => self.visitors.contains_key(ip),
            Who::Bot(ip, _) => self.bots.contains_key(ip),
        }
    }

    /// Takes a report: the latest decides, except that one without a place
    /// leaves the member where an earlier one put it.
    fn insert(&mut self, who: Who, place: Option<Place>) {
        match who {
            Who::User { name, hidden, ip } => {
                // Back after leaving: the later report decides.
                self.left.remove(&name);
                let place = place.or_else(|| self.users.remove(&name).and_then(|u| u.place));
                self.users.insert(name, UserSeen { hidden, ip, place });
            }
            Who::Visitor(ip) => {
                let slot = self.visitors.entry(ip).or_default();
                if place.is_some() {
                    *slot = place;
                }
            }
            Who::Bot(ip, name) => {
                let slot = self.bots.entry(ip).or_insert((name, None));
                if place.is_some() {
                    slot.1 = place;
                }
            }
        }
    }

    fn into_reports(self) -> impl Iterator<Item = (Who, Option<Place>)> {
        let users = self.users.into_iter().map(|(name, u)| {
            let who = Who::User {
                name,
                hidden: u.hidden,
                ip: u.ip,
            };
            (who, u.place)
        });
        let visitors = self
            .visitors
            .into_iter()
            .map(|(ip, place)| (Who::Visitor(ip), place));
        users.chain(visitors).chain(
            self.bots
                .into_iter()
                .map(|(ip, (name, place))| (Who::Bot(ip, name), place)),
        )
    }
}

/// A user's latest report.
#[derive(Debug, Clone)]
struct UserSeen {
    hidden: bool,
    ip: Option<IpAddr>,
    place: Option<Place>,
}

/// How a write ended; a failed one hands its members back.
struct Written {
    /// Whether there was anything to write; a write of nothing says nothing
    /// about the store.
    attempted: bool,
    result: crate::Result<()>,
    unwritten: Waiting,
}

/// How a write ended, for the flush requests it covered.
type Outcome = Result<(), Arc<crate::Error>>;

/// One write at a time runs on a task of its own, so the reporter keeps taking
/// reports from the queue while it is out.
type InFlight = tokio::task::JoinHandle<Written>;

/// The write out, if any, and the flush requests waiting on writes.
#[derive(Default)]
struct Writes {
    in_flight: Option<InFlight>,
    /// Answered when the write in flight ends.
    acks: Vec<Ack>,
    /// Came while a write was out: answered after one more write.
    acks_next: Vec<Ack>,
    /// Came while writes were failing: answered after the next scheduled write.
    acks_scheduled: Vec<Ack>,
}

impl Reporter {
    /// Runs until cancelled or the queue closes, then writes what is left,
    /// trying for up to the shutdown grace period. Ends with an error naming
    /// how many members could not be written.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        flush_every: Duration,
        cancel: CancellationToken,
    ) -> crate::Result<()> {
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
                    Some(Msg::Seen(who, place)) => self.seen(&mut w, who, place).await,
                    Some(Msg::Left(name)) => self.leave(name),
                    Some(Msg::Flush(ack)) => {
                        if self.failing.is_some() {
                            w.acks_scheduled.push(ack);
                        } else if w.in_flight.is_none() {
                            w.in_flight = Some(self.start_write());
                            w.acks.push(ack);
                        } else {
                            w.acks_next.push(ack);
                        }
                    }
                    None => break,
                },
                _ = interval.tick(), if w.in_flight.is_none() => {
                    if !self.waiting.is_empty() || !w.acks_scheduled.is_empty() {
                        w.in_flight = Some(self.start_write());
                        w.acks.append(&mut w.acks_scheduled);
                    }
                }
            }
        }
        // Shutdown: refuse new reports, let the writes out end, write
        // everything already queued, retrying within the grace period.
        rx.close();
        self.settle(&mut w).await;
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Seen(who, place) => self.seen(&mut w, who, place).await,
                Msg::Left(name) => self.leave(name),
                Msg::Flush(ack) => w.acks_next.push(ack),
            }
        }
        self.settle(&mut w).await;
        let deadline = tokio::time::Instant::now() + self.shutdown_grace;
        let retry_every = flush_every.min(Duration::from_millis(500));
        loop {
            w.acks_next.append(&mut w.acks_scheduled);
            if !self.waiting.is_empty() || !w.acks_next.is_empty() {
                self.write_for_next(&mut w);
                self.settle(&mut w).await;
            }
            if self.waiting.is_empty() || tokio::time::Instant::now() + retry_every >= deadline {
                break;
            }
            tokio::time::sleep(retry_every).await;
        }
        let unwritten = self.waiting.len();
        match self.failing.take() {
            Some(cause) if unwritten > 0 => {
                tracing::error!(
                    unwritten,
                    error = %cause,
                    "whos-online: shutting down with presence reports that could not be written"
                );
                Err(crate::Error::Unwritten {
                    members: unwritten,
                    cause,
                })
            }
            _ => Ok(()),
        }
    }

    /// Takes one report. When `max_pending` members already wait, a new one
    /// first waits for the write out, if any, and then has them written (the
    /// queue holds later reports meanwhile); only if writes are failing is it
    /// dropped.
    async fn seen(&mut self, w: &mut Writes, who: Who, place: Option<Place>) {
        if self.failing.is_none() && self.full_for(&who) {
            self.await_write(w).await;
            if self.failing.is_none() && self.full_for(&who) && w.in_flight.is_none() {
                w.in_flight = Some(self.start_write());
            }
        }
        self.take(who, place);
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
        let outcome = self.finished(done);
        for ack in w.acks.drain(..) {
            let _ = ack.send(outcome.clone().map_err(|cause| crate::Error::Unwritten {
                members: self.waiting.len(),
                cause,
            }));
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
    fn take(&mut self, who: Who, place: Option<Place>) {
        if let Who::User { name, .. } = &who
            && let Some(&at) = self.left_lately.get(name)
        {
            if self.writer.clock.now().timestamp_millis() - at < LEFT_GRACE_MS {
                // From before the logout; their next request is handed on.
                self.writer.dedupe.forget(&who);
                return;
            }
            self.left_lately.remove(name);
        }
        if self.full_for(&who) {
            incr(&self.writer.counters.pending_dropped);
            self.writer.dedupe.forget(&who);
            return;
        }
        self.waiting.insert(who, place);
    }

    /// A user logged out: reports of them already waiting, and any of theirs
    /// arriving within [`LEFT_GRACE_MS`], are void; they leave the sets at the
    /// next write.
    fn leave(&mut self, name: String) {
        let now = self.writer.clock.now().timestamp_millis();
        self.left_lately.retain(|_, at| now - *at < LEFT_GRACE_MS);
        self.left_lately.insert(name.clone(), now);
        self.waiting.leave(name);
    }

    /// Hands everything waiting to a write on a task of its own.
    fn start_write(&mut self) -> InFlight {
        let members = std::mem::take(&mut self.waiting);
        tokio::spawn(self.writer.clone().write(members))
    }

    /// Takes a write's outcome: a failed write's members wait again, as room
    /// allows (what came in meanwhile stays: it is newer). The outcome for the
    /// flush requests it covered.
    fn finished(&mut self, done: Result<Written, tokio::task::JoinError>) -> Outcome {
        let written = match done {
            Ok(w) => w,
            Err(e) => {
                // Only a panic in a store, or a runtime shutting down: that
                // write's members are lost.
                incr(&self.writer.counters.flush_errors);
                tracing::error!(error = %e, "whos-online: a presence write task ended abnormally");
                let cause = Arc::new(crate::Error::Task(e.to_string()));
                self.failing = Some(Arc::clone(&cause));
                return Err(cause);
            }
        };
        if !written.attempted {
            return Ok(());
        }
        match written.result {
            Ok(()) => {
                self.failing = None;
                Ok(())
            }
            Err(e) => {
                let cause = Arc::new(e);
                self.failing = Some(Arc::clone(&cause));
                incr(&self.writer.counters.flush_errors);
                let mut unwritten = written.unwritten;
                for name in std::mem::take(&mut unwritten.left) {
                    // Unless they came back meanwhile.
                    if !self.waiting.users.contains_key(&name) {
                        self.waiting.left.insert(name);
                    }
                }
                for (who, place) in unwritten.into_reports() {
                    // A user who left since is not put back.
                    let left_since =
                        matches!(&who, Who::User { name, .. } if self.waiting.left.contains(name));
                    if !self.waiting.contains(&who) && !left_since {
                        self.take(who, place);
                    }
                }
                if self.error_log.allow(10) {
                    tracing::warn!(error = %cause, pending = self.waiting.len(), "whos-online: presence write failed; will retry");
                }
                Err(cause)
            }
        }
    }
}

/// What a write needs, shared with the reporter.
#[derive(Clone)]
pub(crate) struct Writer {
    pub(crate) presence: Arc<dyn PresenceStore>,
    /// Where the store keeps the day secrets, if it does.
    pub(crate) secrets: Option<Arc<dyn DaySecrets>>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The server clock's first sync, waited for before the clock is read.
    pub(crate) settle: Settle,
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
    /// Rate-limits the warning that the member cap trims.
    pub(crate) trim_log: Arc<LogLimiter>,
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
        self.settle.wait().await;
        let now = self.clock.now();
        let day = now.date_naive();
        let at = now.timestamp();
        let mut batch = Batch {
            left_users: members.left.iter().cloned().collect(),
            ..Batch::default()
        };
        for (name, seen) in &members.users {
            if seen.hidden {
                batch.hidden_users.push(name.clone());
            } else {
                batch.users.push(name.clone());
            }
        }
        // One person, once: a user's report removes the visitor entry of the
        // address it came from, and a visitor of that address in this batch is
        // taken for the same person (another guest behind the same address
        // comes back at its next request).
        let user_ips: Vec<IpAddr> = {
            let mut ips: Vec<IpAddr> = members.users.values().filter_map(|u| u.ip).collect();
            ips.sort_unstable();
            ips.dedup();
            ips
        };
        let visitors: Vec<IpAddr> = members
            .visitors
            .keys()
            .filter(|ip| user_ips.binary_search(ip).is_err())
            .copied()
            .collect();
        let bots: Vec<IpAddr> = members.bots.keys().copied().collect();
        batch.bot_names = {
            let mut names: Vec<String> = members
                .bots
                .values()
                .map(|(n, _)| n.as_str().to_owned())
                .collect();
            names.sort_unstable();
            names.dedup();
            names
        };
        batch.bot_places = {
            let mut pairs: Vec<(String, String)> = members
                .bots
                .values()
                .filter_map(|(n, p)| Some((n.as_str().to_owned(), p.as_deref()?.to_owned())))
                .collect();
            pairs.sort_unstable();
            pairs.dedup();
            pairs
        };
        let mut user_places: Vec<Placed> = members
            .users
            .iter()
            .filter_map(|(name, u)| {
                Some(Placed {
                    kind: if u.hidden {
                        MemberKind::HiddenUser
                    } else {
                        MemberKind::User
                    },
                    member: name.clone(),
                    place: u.place.as_deref()?.to_owned(),
                })
            })
            .collect();
        // Visitors' and bots' places, by address: their members are keyed below.
        let anonymous_places: Vec<(MemberKind, IpAddr, &str)> = visitors
            .iter()
            .filter_map(|ip| Some((MemberKind::Visitor, *ip, members.visitors[ip].as_deref()?)))
            .chain(
                members
                    .bots
                    .iter()
                    .filter_map(|(ip, (_, place))| Some((MemberKind::Bot, *ip, place.as_deref()?))),
            )
            .collect();
        batch.places.clone_from(&user_places);
        let anonymous = !visitors.is_empty() || !bots.is_empty() || !user_ips.is_empty();
        let mut tries = 0;
        loop {
            if anonymous {
                // Visitors are stored under the day's pseudonym (or raw, if configured).
                let today = self.pseudonyms.keying(day, at - at.rem_euclid(86_400))?;
                batch.visitors = pseudonymise(&visitors, &today.members).await;
                batch.bots = pseudonymise(&bots, &today.members).await;
                batch.visitors_now_users = pseudonymise(&user_ips, &today.members).await;
                batch.places.truncate(user_places.len());
                for &(kind, ip, place) in &anonymous_places {
                    batch.places.push(Placed {
                        kind,
                        member: today.members.member(ip),
                        place: place.to_owned(),
                    });
                }
                batch.keyed_by = today.keyed_by;
                if today.members.is_hashed()
                    && let Some(yesterday) = self.yesterdays_members(now).await
                {
                    batch.retired_visitors = pseudonymise(&visitors, &yesterday).await;
                    batch.retired_bots = pseudonymise(&bots, &yesterday).await;
                    batch
                        .visitors_now_users
                        .extend(pseudonymise(&user_ips, &yesterday).await);
                }
            }
            let marked = self.presence.mark_seen(at, &batch).await?;
            self.took(&marked);
            let Some(keyed) = batch.keyed_by.take() else {
                break;
            };
            // A store that keeps no secret leaves this process keying by its own.
            // Written under the secret the store holds, or (a batch without
            // visitors or bots, whose writes were not keyed) nothing keyed
            // to redo but the removals of users' visitor entries, derived
            // from another secret than the store's.
            let redo = marked.keyed_wrong
                || (!batch.visitors_now_users.is_empty()
                    && marked
                        .day_secret
                        .as_ref()
                        .is_some_and(|held| *held != keyed.expected));
            let changed = match (marked.keyed_wrong, marked.day_secret) {
                (false, held) => self.pseudonyms.hold(day, held.unwrap_or(keyed.expected)),
                (true, Some(held)) => self.pseudonyms.hold(day, held),
                (true, None) => {
                    self.pseudonyms.forget(day);
                    true
                }
            };
            if !redo {
                if changed {
                    incr(&self.counters.visitor_secret_changes);
                    self.dedupe.clear();
                }
                break;
            }
            // The store holds another secret for the day than the one these
            // visitors were derived from, so they were not written (the users
            // were), and the visitor entries of users' addresses were looked
            // for under the wrong pseudonyms: derive them again from the
            // secret it holds.
            if changed {
                // Whoever stored the new secret removed the day's members
                // keyed by the old one: every visitor is written again at its
                // next request.
                incr(&self.counters.visitor_secret_changes);
                self.dedupe.clear();
            }
            batch.users.clear();
            batch.hidden_users.clear();
            batch.places.clear();
            user_places.clear();
            tries += 1;
            if tries == 3 {
                return Err(crate::Error::Corrupt {
                    store: "presence",
                    detail: "the day's visitor secret changed at each of 3 writes".into(),
                });
            }
        }
        // Other guests behind a user's address are handed on at their next
        // request, not taken for ones written lately.
        for ip in user_ips {
            self.dedupe.forget(&Who::Visitor(ip));
        }
        incr(&self.counters.flushes);
        add(&self.counters.members_written, members.len() as u64);
        Ok(())
    }

    /// Takes what a write did besides writing: trims, lost data, stale members.
    fn took(&self, marked: &Marked) {
        if marked.trimmed > 0 {
            add(&self.counters.members_trimmed, marked.trimmed);
            if self.trim_log.allow(60) {
                tracing::warn!(
                    trimmed = marked.trimmed,
                    "whos-online: the cap on members per set was reached; the least recently seen were dropped"
                );
            }
        }
        if marked.other_places > 0 {
            add(&self.counters.places_overflowed, marked.other_places);
        }
        if marked.stale_removed > 0 {
            add(&self.counters.stale_members_removed, marked.stale_removed);
            tracing::warn!(
                removed = marked.stale_removed,
                "whos-online: the day's visitor secret was lost; the visitors keyed by it are written again at their next request"
            );
            self.dedupe.clear();
        }
        if marked.data_lost {
            tracing::warn!(
                "whos-online: the presence store lost its data; members are written again at their next request"
            );
            self.dedupe.clear();
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
            .members_of(yesterday, self.secrets.as_deref())
            .await
            .ok()
            .flatten()
    }
}

/// The stored members for `ips`, letting other tasks on this worker run every
/// 1,024 addresses: a large write (up to `max_pending` members) must not hold
/// up the requests sharing the worker for its whole length.
async fn pseudonymise(ips: &[IpAddr], members: &Members) -> Vec<String> {
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
