use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Batch, Counts, Online, PresenceStore};
use crate::{Record, Result};

/// An in-memory presence store: the embedded default when no Redis is configured.
/// One process only; for development, tests and the demo.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    inner: Mutex<Inner>,
    max_members: Option<usize>,
}

#[derive(Debug, Default)]
struct Inner {
    users: HashMap<String, i64>,
    hidden: HashMap<String, i64>,
    visitors: HashMap<String, i64>,
    bots: HashMap<String, i64>,
    cache: Option<(Record, Instant)>,
    /// Visitor key secrets by day; only the current and the previous day kept.
    secrets: Vec<(String, Vec<u8>)>,
}

impl MemoryPresence {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps each set at `max` members, trimming the oldest after every write, as
    /// [`RedisPresence::with_max_members`](super::RedisPresence::with_max_members) does.
    pub fn with_max_members(mut self, max: usize) -> Self {
        self.max_members = Some(max.max(1));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn mark(set: &mut HashMap<String, i64>, at: i64, members: &[String]) {
    for m in members {
        let seen = set.entry(m.clone()).or_insert(at);
        *seen = (*seen).max(at);
    }
}

/// Keeps the `max` most recently seen members. Ties go the way of a Redis rank:
/// by score, then by member, lowest first, so both stores trim the same ones.
fn trim(set: &mut HashMap<String, i64>, max: Option<usize>) {
    let Some(max) = max else { return };
    let excess = set.len().saturating_sub(max);
    if excess == 0 {
        return;
    }
    let mut by_age: Vec<(i64, &String)> = set.iter().map(|(m, &t)| (t, m)).collect();
    by_age.select_nth_unstable(excess - 1);
    let oldest: Vec<String> = by_age[..excess].iter().map(|(_, m)| (*m).clone()).collect();
    for m in &oldest {
        set.remove(m);
    }
}

fn count_since(set: &HashMap<String, i64>, cutoff: i64) -> u64 {
    set.values().filter(|&&t| t >= cutoff).count() as u64
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn mark_seen(&self, at: i64, batch: &Batch) -> Result<()> {
        let mut inner = self.lock();
        mark(&mut inner.users, at, &batch.users);
        mark(&mut inner.hidden, at, &batch.hidden_users);
        for name in &batch.users {
            inner.hidden.remove(name);
        }
        for name in &batch.hidden_users {
            inner.users.remove(name);
        }
        mark(&mut inner.visitors, at, &batch.visitors);
        mark(&mut inner.bots, at, &batch.bots);
        for member in &batch.retired_visitors {
            inner.visitors.remove(member);
        }
        for member in &batch.retired_bots {
            inner.bots.remove(member);
        }
        let max = self.max_members;
        let inner = &mut *inner;
        for (set, members) in [
            (&mut inner.users, &batch.users),
            (&mut inner.hidden, &batch.hidden_users),
            (&mut inner.visitors, &batch.visitors),
            (&mut inner.bots, &batch.bots),
        ] {
            if !members.is_empty() {
                trim(set, max);
            }
        }
        Ok(())
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
            set.retain(|_, t| *t >= cutoff);
        }
        Ok(Counts {
            users: (inner.users.len() + inner.hidden.len()) as u64,
            visitors: inner.visitors.len() as u64,
            bots: inner.bots.len() as u64,
        })
    }

    async fn online(&self, cutoff: i64, limit: usize) -> Result<Online> {
        let inner = self.lock();
        let mut recent: Vec<(&String, i64)> = inner
            .users
            .iter()
            .filter(|&(_, &t)| t >= cutoff)
            .map(|(m, &t)| (m, t))
            .collect();
        let user_count = recent.len() as u64 + count_since(&inner.hidden, cutoff);
        // Most recent first, ties by name, as Redis orders a reversed range.
        recent.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(a.0)));
        recent.truncate(limit);
        let mut users: Vec<String> = recent.into_iter().map(|(m, _)| m.clone()).collect();
        users.sort_unstable();
        Ok(Online {
            users,
            user_count,
            visitor_count: count_since(&inner.visitors, cutoff),
            bot_count: count_since(&inner.bots, cutoff),
        })
    }

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

    async fn daily_secret(&self, day: &str, candidate: &[u8; 32]) -> Result<Vec<u8>> {
        let mut inner = self.lock();
        if let Some((_, secret)) = inner.secrets.iter().find(|(d, _)| d == day) {
            return Ok(secret.clone());
        }
        inner.secrets.push((day.to_owned(), candidate.to_vec()));
        // Days are ISO dates, so they sort as strings; keep the two newest.
        inner.secrets.sort_by(|a, b| b.0.cmp(&a.0));
        inner.secrets.truncate(2);
        Ok(candidate.to_vec())
    }
}
