//! The view: what one instance currently knows of who is online and of the
//! record, as one immutable snapshot. A background task replaces it every
//! refresh (`refresher.rs`); everything that reads (page handlers, `/online`,
//! `/stats`, the event stream) reads it without I/O.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::presence::{Counts, Online, PlaceCount};
use crate::record::Record;

/// One instance's current view of who is online, and of the record.
///
/// Got from [`WhosOnline::view`](crate::WhosOnline::view) without any I/O: a
/// shared reference to the snapshot of the latest refresh (every
/// [`refresh`](crate::Builder::refresh) interval, 1 s by default). When a
/// refresh fails (Redis or Postgres down), the view keeps the last good values
/// and [`as_of`](Self::as_of) says how old they are. Before the first
/// successful refresh the counts are zero and `as_of` is `None`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
/// # let whos = axum_whos_online::WhosOnline::builder().build()?;
/// let view = whos.view();
/// let footer = format!(
///     "{} users and {} guests online: {}. Most ever: {}",
///     view.user_count(),
///     view.visitor_count(),
///     view.users().join(", "),
///     view.record().max_users,
/// );
/// # let _ = footer; whos.shutdown().await?; Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub(crate) counts: Counts,
    /// Listed users, most recently seen first, with their last-seen times.
    pub(crate) recent: Arc<[(String, i64)]>,
    /// The same names, sorted by name.
    pub(crate) sorted: Arc<[String]>,
    /// The names of the bots seen within the window, sorted.
    pub(crate) bots: Arc<[String]>,
    /// The place of each of `recent` (same order), or empty without places.
    pub(crate) recent_places: Arc<[Option<String>]>,
    /// Every place with members, busiest first.
    pub(crate) places: Arc<[PlaceCount]>,
    /// `(bot name, place, last seen)`, most recently seen first.
    pub(crate) bot_places: Arc<[(String, String, i64)]>,
    pub(crate) record: Record,
    pub(crate) as_of: Option<DateTime<Utc>>,
    pub(crate) window: Duration,
    /// Goes up by one each time the counts, the listed names or the record
    /// change: the id of the stream's events.
    pub(crate) version: u64,
    /// Goes up by one with every new view (a refresh, or a record read while
    /// presence was not): what encoded bodies are keyed by.
    pub(crate) refreshes: u64,
}

impl View {
    /// Logged-in users online, hidden ones included (unless counted as
    /// visitors, see [`HiddenUsers`](crate::HiddenUsers)).
    pub fn user_count(&self) -> u64 {
        self.counts.users
    }

    /// Of [`user_count`](Self::user_count), how many are hidden.
    pub fn hidden_count(&self) -> u64 {
        self.counts.hidden
    }

    /// Anonymous visitors online.
    pub fn visitor_count(&self) -> u64 {
        self.counts.visitors
    }

    /// Bots online; never part of the visitors or the record.
    pub fn bot_count(&self) -> u64 {
        self.counts.bots
    }

    /// All the counts.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The listed users, sorted by name: the most recently seen, up to
    /// [`view_names`](crate::Builder::view_names) (1,000 by default). Hidden users
    /// never appear.
    pub fn users(&self) -> &[String] {
        &self.sorted
    }

    /// The listed users with their last-seen times (unix seconds), most recently
    /// seen first.
    pub fn recent(&self) -> &[(String, i64)] {
        &self.recent
    }

    /// The names of the bots seen within the window (`Googlebot`, `bingbot`,
    /// ...; `bot` for one the [`BotFilter`](crate::BotFilter) could not name),
    /// sorted, each once.
    pub fn bots(&self) -> &[String] {
        &self.bots
    }

    /// Every place with members within the window, busiest first (most
    /// members of all kinds; ties by name), with their counts; empty without a
    /// [place hook](crate::Builder::places). At most
    /// [`max_places`](crate::Builder::max_places), plus
    /// [`OTHER_PLACE`](crate::OTHER_PLACE) for members beyond.
    pub fn places(&self) -> &[PlaceCount] {
        &self.places
    }

    /// Who is at `place` (members whose latest request named it): complete
    /// counts, the names of the `limit` most recently seen listed users there
    /// (sorted by name; among the [`view_names`](crate::Builder::view_names)
    /// most recently seen of the whole site), and the names of the bots there.
    /// An unknown place has zero counts.
    pub fn online_in(&self, place: &str, limit: usize) -> Online {
        let counts = self
            .places
            .iter()
            .find(|p| p.place == place)
            .map(|p| p.counts)
            .unwrap_or_default();
        let mut users: Vec<String> = if self.recent_places.len() == self.recent.len() {
            self.recent
                .iter()
                .zip(self.recent_places.iter())
                .filter(|(_, at)| at.as_deref() == Some(place))
                .take(limit)
                .map(|((name, _), _)| name.clone())
                .collect()
        } else {
            Vec::new()
        };
        users.sort_unstable();
        let mut bots: Vec<String> = self
            .bot_places
            .iter()
            .filter(|(_, at, _)| at == place)
            .map(|(name, _, _)| name.clone())
            .collect();
        bots.sort_unstable();
        bots.dedup();
        Online::of(users, counts, bots)
    }

    /// Each listed user with when they were last seen and where, most recently
    /// seen first (at most `limit`, among the view's
    /// [`view_names`](crate::Builder::view_names)); and the bots by name, with
    /// where they were (each name and place once, most recently seen first, at
    /// most `limit`; without places, each name once). Hidden users never
    /// appear; they are still in the counts. For an admin page: see
    /// [`WhosOnline::admin_router`](crate::WhosOnline::admin_router).
    pub fn who_is_where(&self, limit: usize) -> WhoIsWhere {
        let users = self
            .recent
            .iter()
            .enumerate()
            .take(limit)
            .map(|(i, (name, seen))| Whereabouts {
                name: name.clone(),
                last_seen: DateTime::from_timestamp(*seen, 0),
                place: self.recent_places.get(i).cloned().flatten(),
            })
            .collect();
        let bots = if self.bot_places.is_empty() {
            self.bots
                .iter()
                .take(limit)
                .map(|name| Whereabouts {
                    name: name.clone(),
                    last_seen: None,
                    place: None,
                })
                .collect()
        } else {
            self.bot_places
                .iter()
                .take(limit)
                .map(|(name, place, seen)| Whereabouts {
                    name: name.clone(),
                    last_seen: DateTime::from_timestamp(*seen, 0),
                    place: Some(place.clone()),
                })
                .collect()
        };
        WhoIsWhere {
            users,
            bots,
            counts: self.counts,
            as_of: self.as_of,
        }
    }

    /// The place of the listed user `name` (its latest request that named
    /// one), if the view lists them.
    pub fn place_of(&self, name: &str) -> Option<&str> {
        let i = self.recent.iter().position(|(n, _)| n == name)?;
        self.recent_places.get(i)?.as_deref()
    }

    /// The `limit` most recently seen names (all the view holds, if fewer),
    /// sorted by name, and the counts: what [`WhosOnline::online`](crate::WhosOnline::online)
    /// answers.
    pub fn online(&self, limit: usize) -> Online {
        let users = if limit >= self.recent.len() {
            self.sorted.to_vec()
        } else {
            let mut users: Vec<String> = self.recent[..limit]
                .iter()
                .map(|(name, _)| name.clone())
                .collect();
            users.sort_unstable();
            users
        };
        Online::of(users, self.counts, self.bots.to_vec())
    }

    /// The all-time record, never below the counts beside it.
    pub fn record(&self) -> Record {
        self.record
    }

    /// When the view was last refreshed successfully (UTC, on the configured
    /// clock); `None` before the first refresh.
    pub fn as_of(&self) -> Option<DateTime<Utc>> {
        self.as_of
    }

    /// How long after the last request a member still counts as online.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Goes up by one each time the counts, the record, the listed names or
    /// their order of recency, or the bots' names change (not when only [`as_of`](Self::as_of)
    /// moves); `0` before the first refresh.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether `other` shows the same counts, record and names in the same
    /// order of recency (a stream listing the 10 most recent sees a change of
    /// order that leaves the whole list as it was).
    pub(crate) fn same_content(&self, other: &View) -> bool {
        self.counts == other.counts
            && self.record == other.record
            && self.bots == other.bots
            && self.places == other.places
            && self.recent_places == other.recent_places
            && self
                .recent
                .iter()
                .map(|(name, _)| name)
                .eq(other.recent.iter().map(|(name, _)| name))
    }
}

/// Who is where, for admins: from [`View::who_is_where`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WhoIsWhere {
    /// Listed users, most recently seen first.
    pub users: Vec<Whereabouts>,
    /// Bots by name, most recently seen first.
    pub bots: Vec<Whereabouts>,
    /// Everyone within the window, by kind (hidden users included).
    pub counts: Counts,
    /// When the view was refreshed.
    pub as_of: Option<DateTime<Utc>>,
}

/// One user or bot of [`WhoIsWhere`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whereabouts {
    /// The user's name, or the bot's ([`BotName`](crate::BotName)).
    pub name: String,
    /// When they were last seen (`None` for a bot when places are off: the
    /// view keeps only the bots' names then).
    pub last_seen: Option<DateTime<Utc>>,
    /// Where: the place their latest request named, if any.
    pub place: Option<String>,
}
