use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Batch, Counts, DEFAULT_MAX_MEMBERS, DaySecrets, Marked, PresenceStore, Snapshot};
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
}

impl Default for MemoryPresence {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            max_members: Some(DEFAULT_MAX_MEMBERS),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    users: Set,
    hidden: Set,
    visitors: Set,
    bots: Set,
    cache: Option<(Record, Instant)>,
    /// Visitor key secrets by day; only the current and the previous day kept.
    secrets: Vec<(String, String)>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }
}

impl Inner {
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
        for name in &batch.left_users {
            inner.users.remove(name);
            inner.hidden.remove(name);
        }
        for m in &batch.retired_visitors {
            inner.visitors.remove(m);
        }
        for m in &batch.retired_bots {
            inner.bots.remove(m);
        }
        let max = self.max_members;
        for (set, members) in [
            (&mut inner.users, &batch.users),
            (&mut inner.hidden, &batch.hidden_users),
            (&mut inner.visitors, &batch.visitors),
            (&mut inner.bots, &batch.bots),
        ] {
            if !members.is_empty() {
                marked.trimmed += set.trim(max);
            }
        }
        Ok(marked)
    }

    async fn prune_and_count(&self, cutoff: i64) -> Result<Counts> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        for set in [
            &mut inner.users,
            &mut inner.hidden,
            &mut inner.visitors,
            &mut inner.bots,
        ] {
            set.prune(cutoff);
        }
        Ok(Counts {
            users: (inner.users.len() + inner.hidden.len()) as u64,
            hidden: inner.hidden.len() as u64,
            visitors: inner.visitors.len() as u64,
            bots: inner.bots.len() as u64,
        })
    }

    async fn last_seen(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.lock().users.seen.get(name).copied())
    }

    async fn snapshot(&self, cutoff: i64, limit: usize) -> Result<Snapshot> {
        let inner = self.lock();
        let hidden = inner.hidden.count_since(cutoff);
        Ok(Snapshot {
            recent: inner.users.most_recent(cutoff, limit),
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
