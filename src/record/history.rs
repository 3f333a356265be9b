//! The daily history: one [`Day`] per UTC day and site, its peaks raised by
//! every tick with the same raise-only rule as the record, and the seam a store
//! of it implements ([`HistoryStore`]).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde::Serialize;

use super::rfc3339_secs;
use crate::Result;

/// Default number of days the history keeps (see
/// [`Builder::history_days`](crate::Builder::history_days)).
pub const DEFAULT_HISTORY_DAYS: u32 = 400;

/// Most days one read of the history returns (`GET /stats/history?days=`).
pub const MAX_HISTORY_READ: u32 = 366;

/// One UTC day of one site: the highest counts seen that day and when each was
/// first reached, and how many distinct users and visitors were seen.
///
/// Serialises to one entry of `GET /stats/history`: the day as `YYYY-MM-DD`,
/// times as RFC 3339 UTC seconds (`null` for a count of `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Day {
    /// The UTC day.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub day: NaiveDate,
    /// Most logged-in users online at once that day.
    pub max_users: u64,
    /// When `max_users` was first reached.
    #[serde(serialize_with = "rfc3339_secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub max_users_at: Option<DateTime<Utc>>,
    /// Most anonymous visitors online at once that day.
    pub max_visitors: u64,
    /// When `max_visitors` was first reached.
    #[serde(serialize_with = "rfc3339_secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub max_visitors_at: Option<DateTime<Utc>>,
    /// Most bots online at once that day.
    pub max_bots: u64,
    /// When `max_bots` was first reached.
    #[serde(serialize_with = "rfc3339_secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub max_bots_at: Option<DateTime<Utc>>,
    /// Distinct logged-in users seen that day (by name). With Redis a
    /// HyperLogLog estimate: standard error 0.81%.
    pub distinct_users: u64,
    /// Distinct anonymous visitors seen that day (by the same pseudonym as in
    /// the sets, so no address is kept). With Redis a HyperLogLog estimate:
    /// standard error 0.81%.
    pub distinct_visitors: u64,
}

impl Day {
    /// A day with nothing seen.
    pub fn empty(day: NaiveDate) -> Self {
        Self {
            day,
            max_users: 0,
            max_users_at: None,
            max_visitors: 0,
            max_visitors_at: None,
            max_bots: 0,
            max_bots_at: None,
            distinct_users: 0,
            distinct_visitors: 0,
        }
    }

    /// The peaks of `at`'s day as seen at `at`: a count of `0` carries no time.
    pub fn seen(users: u64, visitors: u64, bots: u64, at: DateTime<Utc>) -> Self {
        let at = at.trunc_subsecs(0);
        let when = |n: u64| (n > 0).then_some(at);
        Self {
            max_users: users,
            max_users_at: when(users),
            max_visitors: visitors,
            max_visitors_at: when(visitors),
            max_bots: bots,
            max_bots_at: when(bots),
            ..Self::empty(at.date_naive())
        }
    }

    /// Raises each count of `self` to `other`'s where `other`'s is strictly
    /// higher; a time moves only with its count. The days are not compared.
    /// Whether anything rose. The same rule as [`Record::raise`](crate::Record::raise),
    /// which the Postgres upsert spells with `GREATEST`.
    pub fn raise(&mut self, other: &Day) -> bool {
        let mut rose = false;
        for (count, at, new, new_at) in [
            (
                &mut self.max_users,
                &mut self.max_users_at,
                other.max_users,
                other.max_users_at,
            ),
            (
                &mut self.max_visitors,
                &mut self.max_visitors_at,
                other.max_visitors,
                other.max_visitors_at,
            ),
            (
                &mut self.max_bots,
                &mut self.max_bots_at,
                other.max_bots,
                other.max_bots_at,
            ),
        ] {
            if new > *count {
                *count = new;
                *at = new_at;
                rose = true;
            }
        }
        for (count, new) in [
            (&mut self.distinct_users, other.distinct_users),
            (&mut self.distinct_visitors, other.distinct_visitors),
        ] {
            if new > *count {
                *count = new;
                rose = true;
            }
        }
        rose
    }
}

/// Adds `day` to `days`: raised into the entry of the same day (see
/// [`Day::raise`]), or pushed when there is none, so that `days` holds each
/// day once.
pub(crate) fn merge_day(days: &mut Vec<Day>, day: &Day) {
    match days.iter_mut().find(|d| d.day == day.day) {
        Some(d) => {
            d.raise(day);
        }
        None => days.push(*day),
    }
}

/// The daily history of a site, as [`WhosOnline::history`](crate::WhosOnline::history)
/// and `GET /stats/history` give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct History {
    /// One entry per UTC day of the range, oldest first, the last one today;
    /// zeros for days without data. Today's entry holds today's values so far.
    pub days: Vec<Day>,
    /// When this instance last read the history from its store (RFC 3339 UTC);
    /// it is read at each tick, so a value older than a few ticks means the
    /// store is not answering.
    #[serde(serialize_with = "rfc3339_secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub as_of: Option<DateTime<Utc>>,
}

impl History {
    /// The `days` days up to `today` (oldest first) from `stored` (sorted by
    /// day, any range): a day without a row is all zeros.
    pub(crate) fn of(
        stored: &[Day],
        today: NaiveDate,
        days: u32,
        as_of: Option<DateTime<Utc>>,
    ) -> Self {
        let first = today
            .checked_sub_days(chrono::Days::new(u64::from(days.max(1) - 1)))
            .unwrap_or(NaiveDate::MIN);
        let days = first
            .iter_days()
            .take_while(|d| *d <= today)
            .map(|d| match stored.binary_search_by_key(&d, |s| s.day) {
                Ok(i) => stored[i],
                Err(_) => Day::empty(d),
            })
            .collect();
        Self { days, as_of }
    }
}

/// Where the daily history is kept: one row per site and UTC day.
/// [`PostgresRecord`](crate::PostgresRecord) keeps it (table `whos_online_day`)
/// and [`MemoryRecord`](crate::MemoryRecord) does.
///
/// Implementations must make [`raise_days`](Self::raise_days) atomic and
/// raise-only, as the record's [`RecordStore::raise`](crate::RecordStore::raise):
/// any number of instances raising the same day never lower a count or lose a
/// higher one.
#[async_trait]
pub trait HistoryStore: Send + Sync + 'static {
    /// Raises each of `seen` into its day's row (see [`Day::raise`]; a missing
    /// row is created), deletes the rows of days before `keep_from` when it is
    /// given, and returns the stored days from `from` on, oldest first (days
    /// without a row left out). The Postgres store does all of it in one
    /// statement; with nothing to raise or delete it only reads.
    async fn raise_days(
        &self,
        seen: &[Day],
        keep_from: Option<NaiveDate>,
        from: NaiveDate,
    ) -> Result<Vec<Day>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_raise_moves_a_time_only_with_its_count() {
        let mut day = Day::seen(3, 10, 0, at("2026-12-01T10:00:00Z"));
        assert!(!day.raise(&Day::seen(3, 9, 0, at("2026-12-01T11:00:00Z"))));
        assert_eq!(day.max_users_at, Some(at("2026-12-01T10:00:00Z")));
        assert!(day.raise(&Day::seen(4, 2, 1, at("2026-12-01T12:00:00.5Z"))));
        assert_eq!((day.max_users, day.max_visitors, day.max_bots), (4, 10, 1));
        assert_eq!(day.max_users_at, Some(at("2026-12-01T12:00:00Z")));
        assert_eq!(day.max_visitors_at, Some(at("2026-12-01T10:00:00Z")));
        assert_eq!(day.max_bots_at, Some(at("2026-12-01T12:00:00Z")));
        let distinct = Day {
            distinct_users: 7,
            ..Day::empty(day.day)
        };
        assert!(day.raise(&distinct));
        assert!(!day.raise(&Day::empty(day.day)));
        assert_eq!(day.distinct_users, 7);
    }

    #[test]
    fn a_range_has_every_day_once_with_zeros_for_the_missing() {
        let today: NaiveDate = "2026-03-01".parse().unwrap();
        let stored = [
            Day::seen(1, 1, 1, at("2026-02-10T00:00:00Z")),
            Day::seen(2, 0, 0, at("2026-02-27T08:00:00Z")),
            Day::seen(3, 0, 0, at("2026-03-01T08:00:00Z")),
        ];
        let h = History::of(&stored, today, 4, None);
        let days: Vec<String> = h.days.iter().map(|d| d.day.to_string()).collect();
        assert_eq!(
            days,
            ["2026-02-26", "2026-02-27", "2026-02-28", "2026-03-01"]
        );
        let users: Vec<u64> = h.days.iter().map(|d| d.max_users).collect();
        assert_eq!(users, [0, 2, 0, 3]);
        assert_eq!(History::of(&stored, today, 1, None).days.len(), 1);
        assert_eq!(History::of(&[], today, 366, None).days.len(), 366);
    }

    #[test]
    fn a_day_serialises_as_documented() {
        let day = Day {
            distinct_visitors: 12,
            ..Day::seen(0, 5, 0, at("2026-12-01T10:00:00Z"))
        };
        assert_eq!(
            serde_json::to_value(day).unwrap(),
            serde_json::json!({
                "day": "2026-12-01", "max_users": 0, "max_users_at": null,
                "max_visitors": 5, "max_visitors_at": "2026-12-01T10:00:00Z",
                "max_bots": 0, "max_bots_at": null,
                "distinct_users": 0, "distinct_visitors": 12
            })
        );
    }
}
