use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::NaiveDate;

use super::{
    Batch, Counts, DEFAULT_MAX_MEMBERS, DaySecrets, Distinct, HiddenUsers, Marked, MemberKind,
    PlaceCount, PresenceStore, Snapshot, Tally, bot_place_member, bot_places,
};
use crate::places::{DEFAULT_MAX_PLACES, OTHER_PLACE};
use crate::record::RecordCache;
use crate::{Record, Result};

/// An in-memory presence store: the embedded default when no Redis is configured.
/// One process only; for development, tests and the demo.
///
/// Each set keeps its members ordered by last-seen time as well, so reads,
/// pruning and the cap cost what they remove or return, never a scan of every
/// member.
#[derive(Debug)]
pub struct MemoryPresence {
    inner: Mutex<Inner>,
    max_members: Option<usize>,
    max_places: usize,
}

impl Default for MemoryPresence {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            max_members: Some(DEFAULT_MAX_MEMBERS),
            max_places: DEFAULT_MAX_PLACES,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    users: Set,
    hidden: Set,
    visitors: Set,
    bots: Set,
    /// Bot names, by when a bot of that name was last seen.
    bot_names: Set,
    /// Each placed member's place: `u:name`, `v:member` or `b:member` to its
    /// kind and place. A member counts at its place only while it is in its
    /// set within the window, so entries of members removed otherwise are
    /// harmless, and go at the next prune.
    places: HashMap<String, (MemberKind, Arc<str>)>,
    /// Distinct places, by when a member was last placed there.
    place_seen: Set,
    /// `bot name \n place`, by when such a bot was last there.
    bot_places: Set,
    cache: Option<(Record, Instant)>,
    /// Visitor key secrets by day; only the current and the previous day kept.
    secrets: Vec<(String, String)>,
    /// The distinct members of the last two days (see [`DayMembers`]).
    days: BTreeMap<NaiveDate, DayMembers>,
}

/// Most distinct members of one kind the memory store keeps for one day (or
/// the member cap, if lower): beyond it the day's count stops growing and is a
/// lower bound, so that a flood of addresses cannot hold memory for days after
/// the window has emptied.
const MAX_DAY_MEMBERS: usize = 100_000;

/// The distinct members of one UTC day, exactly, up to [`MAX_DAY_MEMBERS`] of
/// each kind.
#[derive(Debug, Default)]
struct DayMembers {
    users: HashSet<String>,
    hidden: HashSet<String>,
    visitors: HashSet<String>,
}

impl DayMembers {
    fn add(set: &mut HashSet<String>, members: &[String], max: Option<usize>) {
        for m in members {
            if max.is_some_and(|max| set.len() >= max) {
                return;
            }
            if !set.contains(m) {
                set.insert(m.clone());
            }
        }
    }

    fn distinct(&self, day: NaiveDate, hidden: HiddenUsers) -> Distinct {
        let union = |a: &HashSet<String>, b: &HashSet<String>| {
            (a.len() + b.iter().filter(|m| !a.contains(*m)).count()) as u64
        };
        match hidden {
            HiddenUsers::AsVisitors => Distinct {
                day,
                users: self.users.len() as u64,
                visitors: union(&self.visitors, &self.hidden),
            },
            _ => Distinct {
                day,
                users: union(&self.users, &self.hidden),
                visitors: self.visitors.len() as u64,
            },
        }
    }
}

/// Members with their last-seen times, indexed both ways.
#[derive(Debug, Default)]
struct Set {
    seen: HashMap<Arc<str>, i64>,
    /// `(last seen, member)`: oldest first, ties by member, as a Redis rank.
    by_time: BTreeSet<(i64, Arc<str>)>,
}

impl Set {
    fn len(&self) -> usize {
        self.seen.len()
    }

    /// Sets `member`'s last-seen time to `at` unless it is later already.
    fn mark(&mut self, member: &str, at: i64) {
        match self.seen.get_key_value(member) {
            Some((_, &t)) if t >= at => {}
            Some((key, &t)) => {
                let key = Arc::clone(key);
                self.by_time.remove(&(t, Arc::clone(&key)));
                self.by_time.insert((at, Arc::clone(&key)));
                self.seen.insert(key, at);
            }
            None => {
                let key: Arc<str> = member.into();
                self.by_time.insert((at, Arc::clone(&key)));
                self.seen.insert(key, at);
            }
        }
    }

    fn remove(&mut self, member: &str) {
        if let Some((key, t)) = self.seen.remove_entry(member) {
            self.by_time.remove(&(t, key));
        }
    }

    /// Removes the least recently seen member; how many were removed (0 or 1).
    fn pop_oldest(&mut self) -> u64 {
        match self.by_time.pop_first() {
            Some((_, key)) => {
                self.seen.remove(&key);
                1
            }
            None => 0,
        }
    }

    /// Removes members last seen before `cutoff`; how many.
    fn prune(&mut self, cutoff: i64) -> u64 {
        let mut removed = 0;
        while self.by_time.first().is_some_and(|(t, _)| *t < cutoff) {
            removed += self.pop_oldest();
        }
        removed
    }

    /// Removes members last seen at or after `since`; how many.
    fn remove_since(&mut self, since: i64) -> u64 {
        let mut removed = 0;
        while let Some((t, key)) = self.by_time.last().cloned()
            && t >= since
        {
            self.by_time.remove(&(t, Arc::clone(&key)));
            self.seen.remove(&key);
            removed += 1;
        }
        removed
    }

    /// Keeps the `max` most recently seen members; how many were removed.
    fn trim(&mut self, max: Option<usize>) -> u64 {
        let mut removed = 0;
        if let Some(max) = max {
            while self.len() > max {
                removed += self.pop_oldest();
            }
        }
        removed
    }

    /// Members last seen at or after `cutoff`. Costs the members before it
    /// that are not pruned yet (the ticker prunes them), never a scan of all.
    fn count_since(&self, cutoff: i64) -> u64 {
        let stale = self.by_time.iter().take_while(|(t, _)| *t < cutoff).count();
        (self.len() - stale) as u64
    }

    /// Every member seen at or after `cutoff`, sorted.
    fn members_since(&self, cutoff: i64) -> Vec<String> {
        let mut members: Vec<String> = self
            .by_time
            .iter()
            .rev()
            .take_while(|(t, _)| *t >= cutoff)
            .map(|(_, m)| m.to_string())
            .collect();
        members.sort_unstable();
        members
    }

    /// The `limit` most recently seen members at or after `cutoff` (ties by
    /// member, highest first, as Redis orders a reversed range).
    fn most_recent(&self, cutoff: i64, limit: usize) -> Vec<(String, i64)> {
        self.by_time
            .iter()
            .rev()
            .take_while(|(t, _)| *t >= cutoff)
            .take(limit)
            .map(|(t, m)| (m.to_string(), *t))
            .collect()
    }
}

impl MemoryPresence {
    /// An empty store, capped at [`DEFAULT_MAX_MEMBERS`] per set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps each set at `max` members, trimming the least recently seen after
    /// every write, as [`RedisPresence::with_max_members`](super::RedisPresence::with_max_members)
    /// does (default [`DEFAULT_MAX_MEMBERS`]).
    pub fn with_max_members(mut self, max: usize) -> Self {
        self.max_members = Some(max.max(1));
        self
    }

    /// Lets each set grow without a cap.
    pub fn without_member_cap(mut self) -> Self {
        self.max_members = None;
        self
    }

    /// Tracks at most `max` distinct places within the window (default
    /// [`DEFAULT_MAX_PLACES`]); members at further places are counted under
    /// [`OTHER_PLACE`].
    pub fn with_max_places(mut self, max: usize) -> Self {
        self.max_places = max.max(1);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }
}

/// The key of a member's place: users by name whether listed or hidden.
fn place_key(kind: MemberKind, member: &str) -> String {
    let tag = match kind {
        MemberKind::User | MemberKind::HiddenUser => 'u',
        MemberKind::Visitor => 'v',
        MemberKind::Bot => 'b',
    };
    format!("{tag}:{member}")
}

impl Inner {
    fn set(&self, kind: MemberKind) -> &Set {
        match kind {
            MemberKind::User => &self.users,
            MemberKind::HiddenUser => &self.hidden,
            MemberKind::Visitor => &self.visitors,
            MemberKind::Bot => &self.bots,
        }
    }

    /// When `member` of `kind` was last seen, if it is in its set.
    fn seen(&self, kind: MemberKind, member: &str) -> Option<i64> {
        self.set(kind).seen.get(member).copied()
    }

    /// Puts the batch's placed members at their places, where this write is
    /// their latest; how many went under [`OTHER_PLACE`].
    fn place(&mut self, at: i64, batch: &Batch, max_places: usize) -> u64 {
        let mut other = 0;
        for p in &batch.places {
            if self.seen(p.kind, &p.member) != Some(at) {
                // Not written (keyed under another secret, or trimmed), or
                // seen later elsewhere.
                continue;
            }
            let place: &str = if self.place_seen.seen.contains_key(p.place.as_str())
                || self.place_seen.len() < max_places
            {
                &p.place
            } else {
                other += 1;
                OTHER_PLACE
            };
            self.place_seen.mark(place, at);
            self.places
                .insert(place_key(p.kind, &p.member), (p.kind, place.into()));
        }
        for (name, place) in &batch.bot_places {
            self.bot_places.mark(&bot_place_member(name, place), at);
        }
        // As many pairs as places: a crawler at every place stays bounded.
        self.bot_places.trim(Some(max_places));
        other
    }

    /// Forgets the places of members no longer in their sets.
    fn prune_places(&mut self, cutoff: i64) {
        let places = std::mem::take(&mut self.places);
        self.places = places
            .into_iter()
            .filter(|(key, (kind, _))| {
                let member = &key[2..];
                self.seen(*kind, member).is_some()
            })
            .collect();
        self.place_seen.prune(cutoff);
        self.bot_places.prune(cutoff);
    }

    /// Members within the window at each place, and the places of `recent`.
    fn count_places(
        &self,
        cutoff: i64,
        recent: &[(String, i64)],
    ) -> (Vec<PlaceCount>, Vec<Option<String>>) {
        if self.places.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let mut at: HashMap<&str, Counts> = HashMap::new();
        for (key, (kind, place)) in &self.places {
            if self.seen(*kind, &key[2..]).is_none_or(|t| t < cutoff) {
                continue;
            }
            let c = at.entry(place).or_default();
            match kind {
                MemberKind::User => c.users += 1,
                MemberKind::HiddenUser => {
                    c.users += 1;
                    c.hidden += 1;
                }
                MemberKind::Visitor => c.visitors += 1,
                MemberKind::Bot => c.bots += 1,
            }
        }
        let places = at
            .into_iter()
            .map(|(place, counts)| PlaceCount {
                place: place.to_owned(),
                counts,
            })
            .collect();
        let recent_places = recent
            .iter()
            .map(|(name, _)| {
                self.places
                    .get(&place_key(MemberKind::User, name))
                    .map(|(_, place)| place.to_string())
            })
            .collect();
        (places, recent_places)
    }
    /// The day's secret: the one held, or `candidate`, now held. Whether it was
    /// stored just now.
    fn claim_secret(&mut self, day: &str, candidate: &str) -> (String, bool) {
        if let Some((_, secret)) = self.secrets.iter().find(|(d, _)| d == day) {
            return (secret.clone(), false);
        }
        self.secrets.push((day.to_owned(), candidate.to_owned()));
        // Days are ISO dates, so they sort as strings; keep the two newest.
        self.secrets.sort_by(|a, b| b.0.cmp(&a.0));
        self.secrets.truncate(2);
        (candidate.to_owned(), true)
    }
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn mark_seen(&self, at: i64, batch: &Batch) -> Result<Marked> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut marked = Marked::written();
        // The same rule as the Redis store's, though a process cannot lose its
        // own secrets: keyed members are written only under the day's secret.
        let keyed_ok = match &batch.keyed_by {
            None => true,
            Some(key) => {
                let (held, stored) = inner.claim_secret(&key.day, &key.candidate);
                if stored {
                    marked.stale_removed = inner.visitors.remove_since(key.day_start)
                        + inner.bots.remove_since(key.day_start);
                }
                let ok = held == key.expected;
                marked.keyed_wrong = !ok;
                marked.day_secret = Some(held);
                ok
            }
        };
        for name in &batch.users {
            inner.users.mark(name, at);
            inner.hidden.remove(name);
        }
        for name in &batch.hidden_users {
            inner.hidden.mark(name, at);
            inner.users.remove(name);
        }
        if keyed_ok {
            for m in &batch.visitors {
                inner.visitors.mark(m, at);
            }
            for m in &batch.bots {
                inner.bots.mark(m, at);
            }
        }
        for name in &batch.bot_names {
            inner.bot_names.mark(name, at);
        }
        for m in &batch.visitors_now_users {
            inner.visitors.remove(m);
            inner.places.remove(&place_key(MemberKind::Visitor, m));
        }
        for name in &batch.left_users {
            inner.users.remove(name);
            inner.hidden.remove(name);
            inner.places.remove(&place_key(MemberKind::User, name));
        }
        // Members removed leave their places, as in Redis: one written again
        // without a place is not counted where it was before.
        for m in &batch.retired_visitors {
            inner.visitors.remove(m);
            inner.places.remove(&place_key(MemberKind::Visitor, m));
        }
        for m in &batch.retired_bots {
            inner.bots.remove(m);
            inner.places.remove(&place_key(MemberKind::Bot, m));
        }
        if let Some(day) = chrono::DateTime::from_timestamp(at, 0).map(|t| t.date_naive()) {
            let max = Some(
                self.max_members
                    .map_or(MAX_DAY_MEMBERS, |m| m.min(MAX_DAY_MEMBERS)),
            );
            let members = inner.days.entry(day).or_default();
            DayMembers::add(&mut members.users, &batch.users, max);
            DayMembers::add(&mut members.hidden, &batch.hidden_users, max);
            if keyed_ok {
                DayMembers::add(&mut members.visitors, &batch.visitors, max);
            }
            // The day, and the one before for the first tick after midnight.
            while inner.days.len() > 2 {
                inner.days.pop_first();
            }
        }
        marked.other_places = inner.place(at, batch, self.max_places);
        let max = self.max_members;
        for (set, members) in [
            (&mut inner.users, &batch.users),
            (&mut inner.hidden, &batch.hidden_users),
            (&mut inner.visitors, &batch.visitors),
            (&mut inner.bots, &batch.bots),
            (&mut inner.bot_names, &batch.bot_names),
        ] {
            if !members.is_empty() {
                marked.trimmed += set.trim(max);
            }
        }
        Ok(marked)
    }

    async fn prune_and_count(&self, cutoff: i64) -> Result<Counts> {
        Ok(self
            .tally(cutoff, &[], HiddenUsers::default())
            .await?
            .counts)
    }

    async fn tally(&self, cutoff: i64, days: &[NaiveDate], hidden: HiddenUsers) -> Result<Tally> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        for set in [
            &mut inner.users,
            &mut inner.hidden,
            &mut inner.visitors,
            &mut inner.bots,
            &mut inner.bot_names,
        ] {
            set.prune(cutoff);
        }
        inner.prune_places(cutoff);
        let counts = Counts {
            users: (inner.users.len() + inner.hidden.len()) as u64,
            hidden: inner.hidden.len() as u64,
            visitors: inner.visitors.len() as u64,
            bots: inner.bots.len() as u64,
        };
        let distinct = days
            .iter()
            .filter_map(|d| Some(inner.days.get(d)?.distinct(*d, hidden)))
            .collect();
        Ok(Tally::new(counts, distinct))
    }

    async fn last_seen(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.lock().users.seen.get(name).copied())
    }

    async fn snapshot(&self, cutoff: i64, limit: usize) -> Result<Snapshot> {
        let inner = self.lock();
        let hidden = inner.hidden.count_since(cutoff);
        let recent = inner.users.most_recent(cutoff, limit);
        let (places, recent_places) = inner.count_places(cutoff, &recent);
        let bot_places = bot_places(inner.bot_places.most_recent(cutoff, limit));
        Ok(Snapshot {
            recent,
            recent_places,
            places,
            bot_places,
            bots: inner.bot_names.members_since(cutoff),
            counts: Counts {
                users: inner.users.count_since(cutoff) + hidden,
                hidden,
                visitors: inner.visitors.count_since(cutoff),
                bots: inner.bots.count_since(cutoff),
            },
        })
    }
}

#[async_trait]
impl RecordCache for MemoryPresence {
    async fn cached_record(&self) -> Result<Option<Record>> {
        let mut inner = self.lock();
        match inner.cache {
            Some((record, expires)) if Instant::now() < expires => Ok(Some(record)),
            Some(_) => {
                inner.cache = None;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn cache_record(&self, record: &Record, ttl: Duration) -> Result<()> {
        let mut inner = self.lock();
        let now = Instant::now();
        match &mut inner.cache {
            // The same generation raises it and keeps its time to live; a lower
            // one (read before a reset) is ignored.
            Some((cached, expires)) if now < *expires && record.generation <= cached.generation => {
                cached.merge(record);
            }
            // Empty, expired, or a reset since: replaced, with a new time to live.
            slot => *slot = Some((*record, now + ttl)),
        }
        Ok(())
    }
}

#[async_trait]
impl DaySecrets for MemoryPresence {
    async fn day_secret(&self, day: &str) -> Result<Option<String>> {
        let inner = self.lock();
        Ok(inner
            .secrets
            .iter()
            .find(|(d, _)| d == day)
            .map(|(_, s)| s.clone()))
    }
}
