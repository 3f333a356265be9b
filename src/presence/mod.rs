//! Who was seen when: the presence store seam, and its Redis and in-memory
//! implementations.
//!
//! Each store keeps sorted sets (users, hidden users, visitors, bots), mapping a
//! member to its last-seen time in unix seconds. It also caches the [`Record`] (Redis hash
//! `{prefix}:record`) so that `/stats` and the ticker rarely need Postgres.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemoryPresence;
pub use self::redis::{RedisPresence, redis_cluster_pool, redis_pool};

use crate::{Record, Result};

/// How many members of each kind are within the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Logged-in users, hidden ones included.
    pub users: u64,
    /// Anonymous visitors (bots excluded).
    pub visitors: u64,
    /// Crawlers and other bots; never part of the record.
    pub bots: u64,
}

/// Members seen in one flush, by kind. Every member is stamped with one time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Users listed by name in `/online`.
    pub users: Vec<String>,
    /// Users counted but never listed. A user is in one of the two sets at a
    /// time: the latest report decides.
    pub hidden_users: Vec<String>,
    /// Anonymous visitors (an address, or its keyed hash).
    pub visitors: Vec<String>,
    /// Bots, keyed like visitors.
    pub bots: Vec<String>,
    /// Visitors' members to remove: in the first window after a UTC day
    /// change, the previous day's pseudonyms of the visitors in `visitors`, so
    /// that a visitor online across midnight counts once. A store that ignores
    /// them counts such a visitor twice until the old member ages out.
    pub retired_visitors: Vec<String>,
    /// Bots' members to remove, as `retired_visitors`.
    pub retired_bots: Vec<String>,
}

impl Batch {
    /// Members seen in the batch, all kinds together (the retired ones are not
    /// counted).
    pub fn len(&self) -> usize {
        self.users.len() + self.hidden_users.len() + self.visitors.len() + self.bots.len()
    }

    /// Whether the batch holds no member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A snapshot of who is online.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Online {
    /// User names seen within the window: at most the asked-for number, the most
    /// recently seen ones, sorted by name.
    pub users: Vec<String>,
    /// All users seen within the window, hidden ones included (not limited).
    pub user_count: u64,
    /// All visitors seen within the window.
    pub visitor_count: u64,
    /// All bots seen within the window.
    pub bot_count: u64,
}

/// Where last-seen times are kept.
///
/// Times are unix seconds. `cutoff` is the oldest last-seen time that still counts
/// as online: a member seen at exactly `cutoff` is online, one second earlier is not.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Marks every member of `batch` as seen at `at`. A member's last-seen time
    /// never moves back (Redis `ZADD ... GT`), so late or reordered batches are
    /// harmless. A user reported hidden leaves the listed set, and back.
    async fn mark_seen(&self, at: i64, batch: &Batch) -> Result<()>;

    /// Whether the store has lost what was written to it (Redis restarted empty,
    /// was flushed, or evicted the keys) since this was last asked, as noticed
    /// by the writes. The reporter then forgets which members it wrote lately,
    /// so that each is written again at its next request instead of after the
    /// de-duplication resolution. The default never notices a loss.
    fn take_data_loss(&self) -> bool {
        false
    }

    /// Removes members last seen before `cutoff` and counts what remains.
    async fn prune_and_count(&self, cutoff: i64) -> Result<Counts>;

    /// Who is online: members seen at or after `cutoff`, whether or not pruning has
    /// run. At most `limit` user names, the most recently seen.
    async fn online(&self, cutoff: i64, limit: usize) -> Result<Online>;

    /// The cached record, or `None` when the cache is empty or expired.
    async fn cached_record(&self) -> Result<Option<Record>>;

    /// Merges `record` into the cache with [`Record::merge`]'s rule: of the same
    /// generation, raise-only, as the record store (so a slow writer can never
    /// lower it); of a higher generation (a reset), it replaces the cache; of a
    /// lower one (read before a reset), it is ignored. A newly filled or replaced
    /// cache gets the time to live `ttl`. The cache keeps the generation.
    async fn cache_record(&self, record: &Record, ttl: Duration) -> Result<()>;

    /// The secret shared by every instance for `day` (`YYYY-MM-DD`, UTC), from
    /// which visitor pseudonyms are keyed: the first caller's `candidate` wins and
    /// later callers get it back. The default keeps nothing and returns
    /// `candidate`, right for a store that lives in one process (the caller
    /// caches the day's key). See [`privacy`](crate#privacy).
    async fn daily_secret(&self, day: &str, candidate: &[u8; 32]) -> Result<Vec<u8>> {
        let _ = day;
        Ok(candidate.to_vec())
    }
}
