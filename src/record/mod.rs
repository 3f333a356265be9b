//! The all-time record: the store seam, and its Postgres and in-memory implementations.
//!
//! Postgres is the truth; Redis holds a cache of it (see
//! [`PresenceStore::cached_record`](crate::PresenceStore::cached_record)).

mod memory;
mod postgres;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Serialize, Serializer};

pub use memory::MemoryRecord;
pub use postgres::{MIGRATIONS, PostgresRecord, migrate};

use crate::Result;

/// The highest counts ever seen, and when each was first reached.
///
/// Serialises to exactly the `/stats` JSON: dates as RFC 3339 UTC seconds, `null`
/// before any record exists.
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
        }
    }

    /// Raises each count of `self` to `other`'s where `other`'s is strictly higher;
    /// a date moves only with its count. Returns whether anything rose.
    ///
    /// This is the one rule every store applies (the Postgres upsert and the Redis
    /// cache script spell it in their own languages).
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
}

fn rfc3339_secs<S: Serializer>(date: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match date {
        Some(d) => s.serialize_str(&d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => s.serialize_none(),
    }
}

/// Where the record is kept. Implementations must make [`raise`](Self::raise)
/// atomic: concurrent raisers, from any number of instances, can never lower the
/// record or lose a higher count.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// The current record; [`Record::default`] when none exists yet.
    async fn load(&self) -> Result<Record>;

    /// Raises the stored record to `candidate` (see [`Record::raise`]) in one atomic
    /// step and returns the record as stored afterwards.
    async fn raise(&self, candidate: &Record) -> Result<Record>;
}
