//! The all-time record and the daily history: the store seams and their
//! Postgres and in-memory implementations, the record's cache seam, and the
//! record store and its cache composed.
//!
//! Postgres is the truth; Redis holds a cache of it (a [`RecordCache`]). The
//! ticker reads and writes the record store through the cache
//! (`caching.rs`), so neither implementation knows the other.

mod caching;
mod history;
mod memory;
mod postgres;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Serialize, Serializer};

pub(crate) use caching::CachingRecord;
pub(crate) use history::merge_day;
pub use history::{DEFAULT_HISTORY_DAYS, Day, History, HistoryStore, MAX_HISTORY_READ};
pub use memory::MemoryRecord;
pub use postgres::{MIGRATIONS, PostgresRecord, migrate};

use crate::Result;

/// The site a [`PostgresRecord`] keeps unless told another: the default
/// [`prefix`](crate::Builder::prefix).
pub(crate) const DEFAULT_SITE: &str = "whos_online";

/// The highest counts ever seen, and when each was first reached.
///
/// Serialises to exactly the `/stats` JSON: dates as RFC 3339 UTC seconds, `null`
/// before any record exists. The generation is not part of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Record {
    /// Most logged-in users ever online at once.
    pub max_users: u64,
    /// When `max_users` was first reached (RFC 3339, UTC); `null` before any.
    #[serde(serialize_with = "rfc3339_secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub max_users_date: Option<DateTime<Utc>>,
    /// Most anonymous visitors ever online at once.
    pub max_visitors: u64,
    /// When `max_visitors` was first reached (RFC 3339, UTC); `null` before any.
    #[serde(serialize_with = "rfc3339_secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub max_visitors_date: Option<DateTime<Utc>>,
    /// How many times the record has been reset (see
    /// [`WhosOnline::reset_record`](crate::WhosOnline::reset_record)); `0` until the
    /// first reset. A record of a higher generation replaces one of a lower, never
    /// merges with it. Not served in `/stats`.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub generation: u64,
}

impl Record {
    /// A candidate record: the counts seen at `at`. A zero count carries no date,
    /// so "nobody was ever online" reads as `0` / `null`.
    pub fn seen(users: u64, visitors: u64, at: DateTime<Utc>) -> Self {
        let at = at.trunc_subsecs(0);
        Self {
            max_users: users,
            max_users_date: (users > 0).then_some(at),
            max_visitors: visitors,
            max_visitors_date: (visitors > 0).then_some(at),
            generation: 0,
        }
    }

    /// Raises each count of `self` to `other`'s where `other`'s is strictly higher;
    /// a date moves only with its count. Returns whether anything rose. The
    /// generations are not looked at (see [`merge`](Self::merge)).
    ///
    /// This is the one rule every store applies within a generation (the Postgres
    /// upsert and the Redis cache script spell it in their own languages).
    pub fn raise(&mut self, other: &Record) -> bool {
        let mut rose = false;
        if other.max_users > self.max_users {
            self.max_users = other.max_users;
            self.max_users_date = other.max_users_date;
            rose = true;
        }
        if other.max_visitors > self.max_visitors {
            self.max_visitors = other.max_visitors;
            self.max_visitors_date = other.max_visitors_date;
            rose = true;
        }
        rose
    }

    /// Whether `other` holds a count above this record's.
    pub fn is_beaten_by(&self, other: &Record) -> bool {
        other.max_users > self.max_users || other.max_visitors > self.max_visitors
    }

    /// Merges a record read from or written to a store into `self`: one of a higher
    /// generation replaces `self` whole (the record was reset since), one of the
    /// same generation raises it ([`raise`](Self::raise)), one of a lower
    /// generation is ignored. Returns whether `self` changed.
    ///
    /// The record caches apply this rule, so that a record read before a reset can
    /// never put the old counts back.
    pub fn merge(&mut self, other: &Record) -> bool {
        match other.generation.cmp(&self.generation) {
            std::cmp::Ordering::Greater => {
                let changed = self != other;
                *self = *other;
                changed
            }
            std::cmp::Ordering::Equal => self.raise(other),
            std::cmp::Ordering::Less => false,
        }
    }

    /// The record after resetting `self` (the stored one) to `to`'s counts: a
    /// count left unchanged keeps its date, a lowered one takes `to`'s date, and
    /// the generation goes up by one. An error when `to` holds a count above
    /// `self`'s: only the ticker raises.
    pub(crate) fn reset_to(&self, to: &Record) -> crate::Result<Record> {
        if self.is_beaten_by(to) {
            return Err(crate::Error::ResetAboveRecord {
                users: to.max_users,
                visitors: to.max_visitors,
                max_users: self.max_users,
                max_visitors: self.max_visitors,
            });
        }
        let keep = |count: u64, date, new: u64, new_date: Option<DateTime<Utc>>| {
            if new == count {
                date
            } else {
                new_date.filter(|_| new > 0)
            }
        };
        Ok(Record {
            max_users: to.max_users,
            max_users_date: keep(
                self.max_users,
                self.max_users_date,
                to.max_users,
                to.max_users_date,
            ),
            max_visitors: to.max_visitors,
            max_visitors_date: keep(
                self.max_visitors,
                self.max_visitors_date,
                to.max_visitors,
                to.max_visitors_date,
            ),
            generation: self.generation.saturating_add(1),
        })
    }
}

/// What [`WhosOnline::reset_record`](crate::WhosOnline::reset_record) lowers the
/// record to. A count left as it is keeps its date; a lowered one is dated at the
/// reset (no date when it becomes `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordReset {
    /// To the users and visitors online now. A count at or above the record stays
    /// as it is (the next tick raises the record if it is beaten).
    ToCurrentCounts,
    /// To these counts, each at most the stored one
    /// ([`Error::ResetAboveRecord`](crate::Error::ResetAboveRecord) otherwise).
    To {
        /// The new most users online at once.
        users: u64,
        /// The new most visitors online at once.
        visitors: u64,
    },
}

pub(crate) fn rfc3339_secs<S: Serializer>(
    date: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match date {
        Some(d) => s.serialize_str(&d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => s.serialize_none(),
    }
}

/// Where the record is kept. Implementations must make [`raise`](Self::raise) and
/// [`reset`](Self::reset) atomic: concurrent raisers, from any number of instances,
/// can never lower the record or lose a higher count, and only a reset lowers it.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// The current record; [`Record::default`] when none exists yet.
    async fn load(&self) -> Result<Record>;

    /// Raises the stored record to `candidate` (see [`Record::raise`]) in one atomic
    /// step and returns the record as stored afterwards. A candidate of a lower
    /// generation than the stored record's was computed before a reset: it is
    /// refused, and the stored record (of the higher generation) is returned
    /// unchanged. A raise never changes the generation.
    async fn raise(&self, candidate: &Record) -> Result<Record>;

    /// Lowers the stored record to `to`'s counts in one atomic step and bumps its
    /// generation; returns the record as stored afterwards. A count left unchanged
    /// keeps its date; a lowered one takes `to`'s date (none for `0`). Fails with
    /// [`Error::ResetAboveRecord`](crate::Error::ResetAboveRecord), changing
    /// nothing, when `to` holds a count above the stored one. `to`'s generation
    /// is not looked at.
    async fn reset(&self, to: &Record) -> Result<Record>;

    /// A store's one-off work before its record is first used, such as taking
    /// over data kept by an earlier version. The ticker calls it before its
    /// first tick reads the record (cached or not), and again at each tick
    /// until it succeeds. The default does nothing.
    async fn prepare(&self) -> Result<()> {
        Ok(())
    }
}

/// A cache of the record in front of a [`RecordStore`], so that `/stats` and the
/// ticker rarely read the store itself.
///
/// [`RedisPresence`](crate::RedisPresence) is one (a Redis hash
/// `{prefix}:record`, in the same slot as the sets), and so is
/// [`MemoryPresence`](crate::MemoryPresence). The builder puts the presence
/// store's cache in front of the record store; name another with
/// [`Builder::record_cache`](crate::Builder::record_cache).
#[async_trait]
pub trait RecordCache: Send + Sync + 'static {
    /// The cached record, or `None` when the cache is empty or expired.
    async fn cached_record(&self) -> Result<Option<Record>>;

    /// Merges `record` into the cache with [`Record::merge`]'s rule: of the same
    /// generation, raise-only, as the record store (so a slow writer can never
    /// lower it); of a higher generation (a reset), it replaces the cache; of a
    /// lower one (read before a reset), it is ignored. A newly filled or replaced
    /// cache gets the time to live `ttl`. The cache keeps the generation.
    async fn cache_record(&self, record: &Record, ttl: Duration) -> Result<()>;
}
