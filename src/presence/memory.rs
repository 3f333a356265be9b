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
}

#[derive(Debug, Default)]
struct Inner {
    users: HashMap<String, i64>,
    hidden: HashMap<String, i64>,
    visitors: HashMap<String, i64>,
    bots: HashMap<String, i64>,
    cache: Option<(Record, Instant)>,
}

impl MemoryPresence {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
            Some((cached, expires)) if now < *expires => {
                cached.raise(record);
            }
            slot => *slot = Some((*record, now + ttl)),
        }
        Ok(())
    }
}
