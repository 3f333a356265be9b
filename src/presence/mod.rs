//! Who was seen when: the presence store seam, and its Redis and in-memory
//! implementations.
//!
//! Each store keeps sorted sets (users, hidden users, visitors, bots), mapping a
//! member to its last-seen time in unix seconds ([`PresenceStore`]). Both stores
//! also keep each day's visitor secret for every instance ([`DaySecrets`]) and
//! cache the [`Record`](crate::Record) (a [`RecordCache`](crate::RecordCache),
//! Redis hash `{prefix}:record`): three capabilities, three traits.

mod memory;
mod redis;

use async_trait::async_trait;
use chrono::NaiveDate;

pub use self::memory::MemoryPresence;
pub use self::redis::{RedisPresence, redis_cluster_pool, redis_pool};
pub(crate) use self::redis::{TickLease, new_instance_id};

use crate::Result;

/// How many members of each kind are within the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Logged-in users, hidden ones included.
    pub users: u64,
    /// Of `users`, how many are hidden.
    pub hidden: u64,
    /// Anonymous visitors (bots excluded).
    pub visitors: u64,
    /// Crawlers and other bots; never part of the record.
    pub bots: u64,
}

/// The day secret a batch's visitor and bot members were derived from, when the
/// store keeps that secret for every instance (no
/// [`visitor_secret`](crate::Builder::visitor_secret) configured).
///
/// The store confirms it in the same round trip as the write: it stores
/// `candidate` when it holds no secret for `day`, and writes the keyed members
/// only while it holds `expected`. So every instance keys each visitor by one
/// secret per day, whatever the order of data loss, restarts, evictions and
/// writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySecret {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The secret the members were derived from.
    pub expected: String,
    /// A fresh random secret, stored when the store holds none for `day`.
    pub candidate: String,
    /// Unix seconds of the day's first second (in the scores' time). When the
    /// store has to store `candidate`, the secret that keyed the day's members
    /// so far is gone: members seen since this time can never be matched
    /// again, and are removed rather than counted twice.
    pub day_start: i64,
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
    /// Visitors' members to remove because a user was seen from their address
    /// (today's pseudonym, and yesterday's in the first window after a UTC day
    /// change): a guest who logs in moves from the visitors to the users
    /// instead of counting twice. Keyed like `visitors`; never also in
    /// `visitors` of the same batch. A store that ignores them counts such a
    /// person twice until the visitor entry ages out.
    pub visitors_now_users: Vec<String>,
    /// The distinct names of the batch's bots ([`BotName`](crate::BotName)s,
    /// from the bot filter's table, never from a client's text), sorted: kept
    /// with their last-seen time so that `/online` can say which bots are about.
    pub bot_names: Vec<String>,
    /// Where members of the batch were, for those whose request named a place
    /// (see [`Builder::places`](crate::Builder::places)); each member at most
    /// once. A store that ignores them has no places.
    pub places: Vec<Placed>,
    /// `(bot name, place)` of the batch's bots that were at a place, each pair
    /// once: which bots are where, read back in [`Snapshot::bot_places`].
    pub bot_places: Vec<(String, String)>,
    /// Users who logged out ([`WhosOnline::user_left`](crate::WhosOnline::user_left)):
    /// removed from the listed and the hidden set. Never also in `users` or
    /// `hidden_users` of the same batch. A store that ignores them lists such a
    /// user until the window passes.
    pub left_users: Vec<String>,
    /// The shared day secret `visitors` and `bots` were derived from, if the
    /// store is to confirm it (see [`DaySecret`]). A store that ignores it keys
    /// visitors by a secret of each process.
    pub keyed_by: Option<DaySecret>,
}

impl Batch {
    /// Members seen in the batch, all kinds together (the retired ones are not
    /// counted).
    pub fn len(&self) -> usize {
        self.users.len() + self.hidden_users.len() + self.visitors.len() + self.bots.len()
    }

    /// Whether the batch has nothing to write: no member seen and no user
    /// who left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.left_users.is_empty()
    }
}

/// Which set a member is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberKind {
    /// A listed user (`Batch::users`).
    User,
    /// A hidden user (`Batch::hidden_users`).
    HiddenUser,
    /// A visitor (`Batch::visitors`, keyed).
    Visitor,
    /// A bot (`Batch::bots`, keyed).
    Bot,
}

/// Where one member of a batch was: the place its latest request named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The set the member is in.
    pub kind: MemberKind,
    /// The member as written to its set: a user's name, or a visitor's or a
    /// bot's keyed member.
    pub member: String,
    /// The place, at most [`MAX_PLACE_LEN`](crate::MAX_PLACE_LEN) bytes.
    pub place: String,
}

/// What a write did, besides writing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Marked {
    /// The store holds another secret for the batch's day than the one its
    /// visitors and bots were derived from, so those were not written (users
    /// were). The writer derives them again from [`day_secret`](Self::day_secret)
    /// and writes them again.
    pub keyed_wrong: bool,
    /// The secret the store holds for the batch's day, when it keeps one.
    pub day_secret: Option<String>,
    /// Visitors and bots removed because the secret that keyed them was lost
    /// (see [`DaySecret::day_start`]); they are written again at their next request.
    pub stale_removed: u64,
    /// Members removed by the cap on members per set, least recently seen first.
    pub trimmed: u64,
    /// The store lost what was written to it earlier (Redis restarted empty, was
    /// flushed, or evicted the keys), as noticed by this write. The writer then
    /// forgets which members it wrote lately, so that each is written again at
    /// its next request. Stores that cannot lose data leave it false.
    pub data_lost: bool,
    /// Members counted under [`OTHER_PLACE`](crate::OTHER_PLACE) because the
    /// store already tracked its cap of distinct places.
    pub other_places: u64,
}

impl Marked {
    /// A write that needed nothing more.
    pub fn written() -> Self {
        Self::default()
    }
}

/// How hidden users are counted; see [`Builder::hidden_users`](crate::Builder::hidden_users).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HiddenUsers {
    /// In `user_count` and the users' record, never listed (the default). Then
    /// `user_count` minus the number of listed names is the number of hidden
    /// users online, and a user who turns hidden leaves the list while the
    /// count stays: watchers can tell.
    #[default]
    AsUsers,
    /// As anonymous visitors: in `visitor_count` and the visitors' record, so
    /// that every user counted in `user_count` is listed (up to the limit) and
    /// no difference gives a hidden user away.
    AsVisitors,
}

impl HiddenUsers {
    pub(crate) fn counts(self, c: Counts) -> Counts {
        match self {
            Self::AsUsers => c,
            Self::AsVisitors => Counts {
                users: c.users - c.hidden.min(c.users),
                hidden: 0,
                visitors: c.visitors + c.hidden,
                bots: c.bots,
            },
        }
    }
}

/// Default cap on members per set (users, hidden users, visitors, bots).
pub const DEFAULT_MAX_MEMBERS: usize = 1_000_000;

/// Who is online: listed names and complete counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Online {
    /// User names seen within the window: at most the asked-for number, the most
    /// recently seen ones, sorted by name.
    pub users: Vec<String>,
    /// All users seen within the window, hidden ones included (not limited).
    pub user_count: u64,
    /// Of `user_count`, how many are hidden.
    pub hidden_count: u64,
    /// All visitors seen within the window.
    pub visitor_count: u64,
    /// All bots seen within the window.
    pub bot_count: u64,
    /// The names of the bots seen within the window (`Googlebot`, `bingbot`,
    /// ...; `bot` for one the filter could not name), sorted, each once.
    pub bots: Vec<String>,
}

impl Online {
    /// The answer of `users` (sorted) and `bots` beside `counts`.
    pub(crate) fn of(users: Vec<String>, counts: Counts, bots: Vec<String>) -> Self {
        Self {
            users,
            user_count: counts.users,
            hidden_count: counts.hidden,
            visitor_count: counts.visitors,
            bot_count: counts.bots,
            bots,
        }
    }
}

/// How a store writes a `(bot name, place)` pair as one member: the name, a
/// newline, the place (a place never holds a control character; see
/// [`MAX_PLACE_LEN`](crate::MAX_PLACE_LEN)).
pub(crate) fn bot_place_member(name: &str, place: &str) -> String {
    format!("{name}\n{place}")
}

/// The pairs of [`bot_place_member`] members with their last-seen times, as
/// [`Snapshot::bot_places`] holds them.
pub(crate) fn bot_places(members: Vec<(String, i64)>) -> Vec<(String, String, i64)> {
    members
        .into_iter()
        .filter_map(|(member, t)| {
            let (name, place) = member.rsplit_once('\n')?;
            Some((name.to_owned(), place.to_owned(), t))
        })
        .collect()
}

/// What a presence store holds within the window, as one read: the most
/// recently seen users, with their last-seen times, and complete counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Listed users (hidden ones never) with their last-seen times (unix
    /// seconds), most recently seen first; ties by name, highest first (the
    /// order of a reversed Redis range). At most the asked-for number.
    pub recent: Vec<(String, i64)>,
    /// The names of the bots seen within the window, sorted, each once.
    pub bots: Vec<String>,
    /// Every member within the window, by kind.
    pub counts: Counts,
    /// The place of each of `recent`, in the same order (`None` for a user
    /// whose requests named none); empty when the store keeps no places.
    pub recent_places: Vec<Option<String>>,
    /// Every place with a member within the window, and how many of each kind
    /// are there; any order.
    pub places: Vec<PlaceCount>,
    /// `(bot name, place, last seen)` of the bots within the window that were
    /// at a place, most recently seen first; at most the asked-for number.
    pub bot_places: Vec<(String, String, i64)>,
}

/// How many members are at one place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaceCount {
    /// The place.
    pub place: String,
    /// Members whose latest request was there, by kind.
    pub counts: Counts,
}

impl Snapshot {
    /// The [`Online`] answer: the `limit` most recently seen names (or all the
    /// snapshot holds, if fewer), sorted by name, and the counts.
    pub fn online(&self, limit: usize) -> Online {
        let mut users: Vec<String> = self
            .recent
            .iter()
            .take(limit)
            .map(|(name, _)| name.clone())
            .collect();
        users.sort_unstable();
        Online::of(users, self.counts, self.bots.clone())
    }
}

/// How many distinct users and visitors a store saw on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Distinct {
    /// The UTC day.
    pub day: NaiveDate,
    /// Distinct users, by name (hidden ones too, unless counted as visitors:
    /// see [`HiddenUsers`]).
    pub users: u64,
    /// Distinct visitors, by pseudonym (and hidden users, when counted as
    /// visitors).
    pub visitors: u64,
}

/// What one tick reads from a presence store: the counts after pruning and the
/// distinct members of some days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tally {
    /// Members within the window after pruning, by kind (hidden users as
    /// users: the ticker applies [`HiddenUsers`] to them).
    pub counts: Counts,
    /// The distinct members of each asked-for day the store knows of.
    pub distinct: Vec<Distinct>,
}

impl Tally {
    /// A tally of `counts` and the distinct members of `distinct`'s days.
    pub fn new(counts: Counts, distinct: Vec<Distinct>) -> Self {
        Self { counts, distinct }
    }
}

/// How long a presence store keeps a day's distinct members: the day, and two
/// more for a tick late after midnight to read the day's final count.
pub const DISTINCT_TTL_SECS: u64 = 3 * 24 * 60 * 60;

/// Where last-seen times are kept.
///
/// Times are unix seconds. `cutoff` is the oldest last-seen time that still counts
/// as online: a member seen at exactly `cutoff` is online, one second earlier is not.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Marks every member of `batch` as seen at `at`. A member's last-seen time
    /// never moves back (Redis `ZADD ... GT`), so late or reordered batches are
    /// harmless. A user reported hidden leaves the listed set, and back. When
    /// the batch is [`keyed_by`](Batch::keyed_by) a day secret, its visitors and
    /// bots are written only under the secret the store holds for the day.
    async fn mark_seen(&self, at: i64, batch: &Batch) -> Result<Marked>;

    /// Removes members last seen before `cutoff` and counts what remains.
    async fn prune_and_count(&self, cutoff: i64) -> Result<Counts>;

    /// What a tick reads, in one round trip: as
    /// [`prune_and_count`](Self::prune_and_count), and how many distinct users
    /// and visitors were seen on each of `days` (UTC, by the day of the time
    /// each batch was [marked](Self::mark_seen) at), hidden users counted as
    /// `hidden` says. The default knows no distinct members: the history then
    /// keeps zeros for them.
    async fn tally(&self, cutoff: i64, days: &[NaiveDate], hidden: HiddenUsers) -> Result<Tally> {
        let _ = (days, hidden);
        Ok(Tally::new(self.prune_and_count(cutoff).await?, Vec::new()))
    }

    /// Who is online: members seen at or after `cutoff`, whether or not pruning has
    /// run. At most `limit` users listed, the most recently seen, with their
    /// last-seen times; complete counts. One round trip.
    async fn snapshot(&self, cutoff: i64, limit: usize) -> Result<Snapshot>;

    /// When the listed user `name` was last seen (unix seconds), if the store
    /// holds them; `None` for a hidden user, or one pruned or never seen. The
    /// default holds nobody: a store of your own that can answer overrides it.
    async fn last_seen(&self, name: &str) -> Result<Option<i64>> {
        let _ = name;
        Ok(None)
    }
}

/// The read side of the day secrets a presence store keeps for every instance
/// (see [`DaySecret`]): the store claims a day's secret in the same round trip
/// as a write ([`Batch::keyed_by`]); this reads one back without storing one.
///
/// [`RedisPresence`] and [`MemoryPresence`] keep them. A store of your own that
/// confirms [`Batch::keyed_by`] names its secrets with
/// [`Builder::day_secrets`](crate::Builder::day_secrets).
#[async_trait]
pub trait DaySecrets: Send + Sync + 'static {
    /// The secret held for `day` (`YYYY-MM-DD`, UTC), if any, without storing
    /// one: used to retire the previous day's pseudonyms after midnight. See
    /// [`privacy`](crate#privacy).
    async fn day_secret(&self, day: &str) -> Result<Option<String>>;
}
