//! The Redis implementation: the sorted sets and their Lua scripts, the record
//! cache hash, the day secrets, and (in `lease.rs`) the tick lease that lets one
//! instance at a time run the background tick.

mod lease;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate};
use deadpool_redis::redis::{self, Script, aio::ConnectionLike};
use deadpool_redis::{Pool, Runtime, cluster};

pub(crate) use self::lease::{TickLease, new_instance_id};
use super::{
    Batch, Counts, DEFAULT_MAX_MEMBERS, DISTINCT_TTL_SECS, DaySecrets, Distinct, HiddenUsers,
    Marked, MemberKind, PlaceCount, PresenceStore, Snapshot, Tally,
};
use crate::clock::ServerClock;
use crate::places::OTHER_PLACE;
use crate::record::RecordCache;
use crate::{Error, Record, Result};

/// The kinds of the day's distinct-member keys: listed users' names, hidden
/// users' names, visitors' pseudonyms.
const DISTINCT_KINDS: [&str; 3] = ["users", "hidden", "visitors"];

/// Members per `ZADD` in one write: a write of up to `max_pending` members goes
/// as several commands in the one pipeline, so no single command holds Redis
/// (which serves one command at a time) for long.
const ZADD_PART: usize = 1_000;

/// One pool policy for both pool kinds (their builders are distinct types): at most
/// 16 connections, and waiting for, creating and recycling one each bounded to 1 s.
macro_rules! bounded_pool {
    ($builder:expr) => {{
        let timeout = Some(Duration::from_secs(1));
        $builder
            .max_size(16)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::RedisConfig(e.to_string()))
    }};
}

/// Builds a `deadpool-redis` pool with the timeouts this crate relies on: waiting
/// for a connection, creating one and recycling one are each bounded, so a dead or
/// paused Redis makes a background task fail fast instead of hanging.
///
/// Its connections keep no per-reply timeout of their own (the `redis` crate's
/// default is 500 ms): every call the store makes is already bounded by
/// [`RedisPresence::with_timeout`] (default 2 s), and a write of many members, or
/// a prune of many, on a loaded machine can take longer than 500 ms to answer
/// without anything being wrong.
pub fn redis_pool(url: &str) -> Result<Pool> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(None);
    let manager = deadpool_redis::Manager::new_with_config(url, config)
        .map_err(|e| Error::RedisConfig(e.to_string()))?;
    bounded_pool!(Pool::builder(manager))
}

/// Builds a `deadpool-redis` pool onto a Redis Cluster, from the addresses of one
/// or more of its nodes (`redis://host:port`), with the same bounded timeouts as
/// [`redis_pool`]. Hand it to [`Builder::redis_cluster`](crate::Builder::redis_cluster).
pub fn redis_cluster_pool<S: AsRef<str>>(urls: &[S]) -> Result<cluster::Pool> {
    let urls: Vec<String> = urls.iter().map(|u| u.as_ref().to_owned()).collect();
    bounded_pool!(
        cluster::Config::from_urls(urls)
            .builder()
            .map_err(|e| Error::RedisConfig(e.to_string()))?
    )
}

/// One Redis server, or a Redis Cluster: the two pool kinds behind one store.
#[derive(Clone)]
enum Pools {
    Single(Pool),
    Cluster(cluster::Pool),
}

/// A connection from either pool kind; commands and pipelines go through it alike.
/// On a cluster, a pipeline goes to the node owning its keys' slot, which is one
/// slot thanks to the hash tag.
pub(crate) enum Conn {
    Single(deadpool_redis::Connection),
    Cluster(cluster::Connection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The reply to `TIME`: seconds and microseconds.
type ServerTime = (i64, i64);

/// Merge of a record into the cache hash, the rule of [`Record::merge`]: a higher
/// generation (a reset) replaces the hash, with a new TTL; the same generation
/// raises it, the same rule as [`Record::raise`]; a lower one (read before a
/// reset) is ignored. A hash without a generation field (written before there
/// were generations) is generation 0. An existing hash keeps its own TTL, so the
/// cache is re-read from Postgres at least once per TTL. Returns 1 when the hash
/// was written or already held the record, 0 when the record was ignored.
static CACHE_RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local generation = tonumber(ARGV[6])
if redis.call('EXISTS', KEYS[1]) == 1 then
  local current = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
  if generation < current then
    return 0
  end
  if generation == current then
    local function raise(count_field, date_field, count, date)
      local stored = tonumber(redis.call('HGET', KEYS[1], count_field))
      if stored == nil or tonumber(count) > stored then
        redis.call('HSET', KEYS[1], count_field, count, date_field, date)
      end
    end
    raise('max_users', 'max_users_date', ARGV[1], ARGV[2])
    raise('max_visitors', 'max_visitors_date', ARGV[3], ARGV[4])
    redis.call('HSET', KEYS[1], 'generation', ARGV[6])
    if redis.call('PTTL', KEYS[1]) < 0 then
      redis.call('PEXPIRE', KEYS[1], ARGV[5])
    end
    return 1
  end
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'max_users', ARGV[1], 'max_users_date', ARGV[2],
  'max_visitors', ARGV[3], 'max_visitors_date', ARGV[4], 'generation', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
",
    )
});

/// How long a day's visitor secret lives: the day itself plus slack for clocks
/// around midnight and for retiring the day's pseudonyms the next day.
const SECRET_TTL_SECS: u64 = 2 * 24 * 3600;

/// Lua shared by the place scripts. `chunks(list, f)` calls `f` with slices of
/// at most 1,000 elements (a command takes its arguments from Lua's stack).
/// `unplace(where, counts, ids)` takes members out of their places: one `HMGET`
/// of their entries, one `HINCRBY` per place and kind that lost members (the
/// field goes at zero), one `HDEL` of the entries.
macro_rules! unplace_lua {
    () => {
        r"
local function chunks(list, f)
  for s = 1, #list, 1000 do
    f({unpack(list, s, math.min(s + 999, #list))})
  end
end
local function apply(counts, delta)
  local changed = false
  for field, d in pairs(delta) do
    if d ~= 0 then
      changed = true
      if redis.call('HINCRBY', counts, field, d) <= 0 then
        redis.call('HDEL', counts, field)
      end
    end
  end
  return changed
end
local function bump(counts)
  -- A hash made anew (expired, or Redis lost it) starts a new epoch, so that
  -- a reader never takes its first versions for the old ones.
  if redis.call('HINCRBY', counts, '#version', 1) == 1 then
    local t = redis.call('TIME')
    redis.call('HSET', counts, '#epoch', t[1] .. '.' .. t[2])
  end
end
local function unplace(where, counts, ids)
  local delta = {}
  chunks(ids, function(part)
    local olds = redis.call('HMGET', where, unpack(part))
    local present = {}
    for j, old in ipairs(olds) do
      if old then
        delta[old] = (delta[old] or 0) - 1
        present[#present + 1] = part[j]
      end
    end
    if #present > 0 then
      redis.call('HDEL', where, unpack(present))
    end
  end)
  if apply(counts, delta) then
    bump(counts)
  end
end
"
    };
}

/// Claims the day's visitor secret: stores the candidate (ARGV[1]) when none is
/// held, and returns the secret held afterwards. A candidate stored where the
/// day's members already sit means the secret that keyed them is gone: members
/// seen since the day's start (ARGV[3]) can never be matched again, so they are
/// removed (and written again at their next request) instead of counting twice,
/// and taken out of their places when KEYS[4] and KEYS[5] (the where hash and
/// the place counts) are given. Returns `{secret, members removed}`.
const CLAIM_SECRET: &str = concat!(
    unplace_lua!(),
    r"
local held = redis.call('GET', KEYS[1])
if held then
  return {held, 0}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if #KEYS == 5 then
  for k, tag in ipairs({'v:', 'b:'}) do
    local ids = {}
    for _, member in ipairs(redis.call('ZRANGE', KEYS[k + 1], ARGV[3], '+inf', 'BYSCORE')) do
      ids[#ids + 1] = tag .. member
    end
    unplace(KEYS[4], KEYS[5], ids)
  end
end
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[2], ARGV[3], '+inf')
  + redis.call('ZREMRANGEBYSCORE', KEYS[3], ARGV[3], '+inf')
return {ARGV[1], removed}
"
);

/// Puts a write's placed members at their places, and takes members out of
/// theirs. KEYS: where, place counts, places, bot-places, then the users,
/// hidden, visitors and bots sets. ARGV: at, max places, the keys' TTL, the
/// name of the overflow place; then a count and that many `(kind, member,
/// place)` (kind 0 listed user, 1 hidden user, 2 visitor, 3 bot); a count and
/// that many `(bot name, place)`; a count and that many member ids to unplace.
///
/// The where hash maps a member id (`u:name`, `v:member`, `b:member`) to
/// `kind|place` (kind `u`, `h`, `v` or `b`); the place counts map `kind|place`
/// to how many members are there. A member is placed only where this write is
/// its latest (its score is `at`): a later write elsewhere wins. The work is
/// done per command over the whole batch (`ZMSCORE`, `HMGET`, `HSET`) and per
/// place, not per member. Returns how many went to the overflow place.
const PLACE: &str = concat!(
    unplace_lua!(),
    r"
local at = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local ttl = ARGV[3]
local tags = {'u:', 'u:', 'v:', 'b:'}
local kinds = {'u|', 'h|', 'v|', 'b|'}
local n = tonumber(ARGV[5])
local i = 6
-- The members by kind, to check in one ZMSCORE per kind that this write is
-- their latest.
local by_kind = {{}, {}, {}, {}}
for _ = 1, n do
  local kind = tonumber(ARGV[i]) + 1
  local list = by_kind[kind]
  list[#list + 1] = {ARGV[i + 1], ARGV[i + 2]}
  i = i + 3
end
local placed = {}
for kind = 1, 4 do
  local list = by_kind[kind]
  for s = 1, #list, 1000 do
    local part = {}
    for j = s, math.min(s + 999, #list) do part[#part + 1] = list[j][1] end
    local seen = redis.call('ZMSCORE', KEYS[4 + kind], unpack(part))
    for j, score in ipairs(seen) do
      if score and tonumber(score) == at then
        local m = list[s + j - 1]
        placed[#placed + 1] = {tags[kind] .. m[1], kinds[kind], m[2]}
      end
    end
  end
end
-- Each member's current entry, in one HMGET per 1,000: a member that stays
-- where it was costs nothing more.
local olds = {}
for s = 1, #placed, 1000 do
  local ids = {}
  for j = s, math.min(s + 999, #placed) do ids[#ids + 1] = placed[j][1] end
  for j, old in ipairs(redis.call('HMGET', KEYS[1], unpack(ids))) do
    olds[s + j - 1] = old
  end
end
-- Places of members that arrive or move: known ones, new ones while there is
-- room, else the overflow place. The registry is asked once for every
-- distinct such place.
local known = {}
local distinct = {}
local touched = {}
for j, p in ipairs(placed) do
  if olds[j] == p[2] .. p[3] then
    known[p[3]] = true
    touched[p[3]] = true
  end
end
for j, p in ipairs(placed) do
  if known[p[3]] == nil then
    known[p[3]] = false
    distinct[#distinct + 1] = p[3]
  end
end
local new_places = 0
for s = 1, #distinct, 1000 do
  local part = {unpack(distinct, s, math.min(s + 999, #distinct))}
  for j, score in ipairs(redis.call('ZMSCORE', KEYS[3], unpack(part))) do
    if score then
      known[part[j]] = true
    else
      new_places = new_places + 1
    end
  end
end
local card = new_places > 0 and redis.call('ZCARD', KEYS[3]) or 0
local other = 0
local function admit(place)
  if not known[place] and card < max then
    known[place] = true
    card = card + 1
  end
  return known[place]
end
local delta = {}
local moved = {}
for j, p in ipairs(placed) do
  local old = olds[j]
  local place = p[3]
  if not admit(place) then
    place = ARGV[4]
    other = other + 1
  end
  touched[place] = true
  local new = p[2] .. place
  if old ~= new then
    if old then delta[old] = (delta[old] or 0) - 1 end
    delta[new] = (delta[new] or 0) + 1
    moved[#moved + 1] = p[1]
    moved[#moved + 1] = new
  end
end
local changed = apply(KEYS[2], delta)
for s = 1, #moved, 1000 do
  redis.call('HSET', KEYS[1], unpack(moved, s, math.min(s + 999, #moved)))
end
local registry = {}
for place in pairs(touched) do
  registry[#registry + 1] = at
  registry[#registry + 1] = place
end
for s = 1, #registry, 1000 do
  redis.call('ZADD', KEYS[3], 'GT', unpack(registry, s, math.min(s + 999, #registry)))
end
local pairs_count = tonumber(ARGV[i])
i = i + 1
local bots = {}
for _ = 1, pairs_count do
  bots[#bots + 1] = at
  bots[#bots + 1] = ARGV[i] .. '\n' .. ARGV[i + 1]
  i = i + 2
end
for s = 1, #bots, 1000 do
  redis.call('ZADD', KEYS[4], 'GT', unpack(bots, s, math.min(s + 999, #bots)))
end
if pairs_count > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -max - 1)
  redis.call('EXPIRE', KEYS[4], ttl)
end
local gone = {}
for _ = 1, tonumber(ARGV[i]) do
  i = i + 1
  gone[#gone + 1] = ARGV[i]
end
unplace(KEYS[1], KEYS[2], gone)
-- A swap of two members leaves the counts as they were but not the where
-- hash: news for the readers too.
if changed or #moved > 0 then
  bump(KEYS[2])
end
-- They live as long as members are placed, whether or not any moved.
if #placed > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
if #registry > 0 then
  redis.call('EXPIRE', KEYS[3], ttl)
end
return other
"
);

/// The member cap with places: keeps the ARGV[1] most recently seen of KEYS[1],
/// and takes the members it drops out of their places (member ids are ARGV[2]
/// followed by the member; KEYS[2] and KEYS[3] are the where hash and the place
/// counts). Returns how many were dropped.
const TRIM_PLACED: &str = concat!(
    unplace_lua!(),
    r"
local keep = tonumber(ARGV[1])
local gone = redis.call('ZRANGE', KEYS[1], 0, -keep - 1)
local ids = {}
for _, member in ipairs(gone) do
  ids[#ids + 1] = ARGV[2] .. member
end
unplace(KEYS[2], KEYS[3], ids)
if #gone > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -keep - 1)
end
return #gone
"
);

/// Prunes the places, in steps that each hold Redis briefly: takes out of their
/// places (counts and where hash) and out of their sets up to ARGV[2] of the
/// members last seen before ARGV[1], the least recently seen first, and returns
/// how many; called again until it returns fewer. KEYS: where, place counts,
/// then the users, hidden, visitors and bots sets.
const PRUNE_PLACED: &str = concat!(
    unplace_lua!(),
    r"
local below = '(' .. ARGV[1]
local left = tonumber(ARGV[2])
local tags = {'u:', 'u:', 'v:', 'b:'}
local done = 0
for k = 3, 6 do
  if left <= 0 then break end
  local gone = redis.call('ZRANGE', KEYS[k], '-inf', below, 'BYSCORE', 'LIMIT', 0, left)
  local ids = {}
  for _, member in ipairs(gone) do
    ids[#ids + 1] = tags[k - 2] .. member
  end
  unplace(KEYS[1], KEYS[2], ids)
  if #gone > 0 then
    -- The least recently seen are the lowest ranks.
    redis.call('ZREMRANGEBYRANK', KEYS[k], 0, #gone - 1)
  end
  left = left - #gone
  done = done + #gone
end
return done
"
);

/// Members [`PRUNE_PLACED`] handles per call: a few milliseconds of Redis.
const PRUNE_STEP: usize = 2_000;

/// `ZADD GT` of keyed members (ARGV[3..]) at ARGV[2] into KEYS[1], and `PFADD`
/// of them into the day's distinct members KEYS[3] when given, only while the
/// day's secret (KEYS[2]) is the one they were derived from (ARGV[1]).
/// Returns 1 when written, 0 when the secret differs.
const ADD_IF_KEYED: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
local args = {}
for i = 3, #ARGV do
  args[#args + 1] = ARGV[2]
  args[#args + 1] = ARGV[i]
end
redis.call('ZADD', KEYS[1], 'GT', unpack(args))
if KEYS[3] then
  redis.call('PFADD', KEYS[3], unpack(ARGV, 3))
end
return 1
";

/// The presence store in Redis, through a `deadpool-redis` pool onto one server
/// ([`new`](Self::new)) or onto a Redis Cluster ([`cluster`](Self::cluster)).
///
/// Keys are `{prefix}:users`, `{prefix}:hidden`, `{prefix}:visitors`,
/// `{prefix}:bots`, `{prefix}:bot-names` (sorted sets, member to last-seen unix seconds),
/// `{prefix}:record` (hash, the record cache) and `{prefix}:tick-lease` (which
/// instance runs the background tick). The braces are literal: they make the
/// prefix a Redis Cluster hash tag, so every key of one installation lives in one
/// slot and each pipeline is one round trip to one node.
#[derive(Clone)]
pub struct RedisPresence {
    pool: Pools,
    users: String,
    hidden: String,
    visitors: String,
    bots: String,
    bot_names: String,
    record: String,
    lease: String,
    secret_prefix: String,
    set_ttl_secs: u64,
    max_members: Option<usize>,
    /// Places are kept (at most this many distinct ones per window) only when
    /// set: without a place hook they cost nothing.
    max_places: Option<usize>,
    place_counts_key: String,
    where_key: String,
    places_key: String,
    bot_places_key: String,
    /// Prefix of the day's distinct members: `{prefix}:distinct:users:YYYY-MM-DD`,
    /// and `:hidden:`, `:visitors:` (HyperLogLogs).
    distinct_prefix: String,
    server_clock: Option<Arc<ServerClock>>,
    timeout: Duration,
    /// A key of this store alone, set by every write: missing at a write that
    /// follows another within its lifetime, it means Redis lost its data.
    marker: String,
    /// The time of the last write, 0 before the first; shared by clones, which
    /// are the same store.
    last_write: Arc<AtomicI64>,
    /// When this store last set the lifetime of the day's distinct-member
    /// keys (0: never, or Redis lost its data since): at most once a minute
    /// and at each new day, rather than at every write.
    distinct_ttl_at: Arc<AtomicI64>,
    /// The places last read, and the version of the counts they were read
    /// at: a refresh reads them again only when the version moved.
    places_cache: Arc<std::sync::Mutex<PlacesCache>>,
}

/// What [`RedisPresence::snapshot`] read of the places, kept while the
/// counts' version stays.
#[derive(Debug, Default)]
struct PlacesCache {
    version: Option<String>,
    places: Vec<PlaceCount>,
    /// Listed users' places, for the names read.
    user_places: HashMap<String, Option<String>>,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("users", &self.users)
            .field("visitors", &self.visitors)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl RedisPresence {
    /// A store over `pool` with keys under `prefix` (e.g. `whos_online`).
    pub fn new(pool: Pool, prefix: &str) -> Self {
        Self::with_pools(Pools::Single(pool), prefix)
    }

    /// A store on a Redis Cluster (see [`redis_cluster_pool`]), keys under `prefix`.
    /// Every key carries the hash tag `{prefix}`, so all of them live in one slot.
    pub fn cluster(pool: cluster::Pool, prefix: &str) -> Self {
        Self::with_pools(Pools::Cluster(pool), prefix)
    }

    fn with_pools(pool: Pools, prefix: &str) -> Self {
        Self {
            pool,
            users: format!("{{{prefix}}}:users"),
            hidden: format!("{{{prefix}}}:hidden"),
            visitors: format!("{{{prefix}}}:visitors"),
            bots: format!("{{{prefix}}}:bots"),
            bot_names: format!("{{{prefix}}}:bot-names"),
            record: format!("{{{prefix}}}:record"),
            lease: format!("{{{prefix}}}:tick-lease"),
            secret_prefix: format!("{{{prefix}}}:visitor-key"),
            set_ttl_secs: 24 * 60 * 60,
            max_members: Some(DEFAULT_MAX_MEMBERS),
            max_places: None,
            place_counts_key: format!("{{{prefix}}}:place-counts"),
            where_key: format!("{{{prefix}}}:where"),
            places_key: format!("{{{prefix}}}:places"),
            bot_places_key: format!("{{{prefix}}}:bot-places"),
            distinct_prefix: format!("{{{prefix}}}:distinct"),
            server_clock: None,
            timeout: Duration::from_secs(2),
            marker: format!(
                "{{{prefix}}}:writer:{:016x}",
                std::collections::hash_map::RandomState::new().hash_one(0x77_u64)
            ),
            last_write: Arc::default(),
            distinct_ttl_at: Arc::default(),
            places_cache: Arc::default(),
        }
    }

    /// The HyperLogLog of the distinct `kind` (one of [`DISTINCT_KINDS`])
    /// seen on `day`.
    fn distinct_key(&self, kind: &str, day: NaiveDate) -> String {
        format!("{}:{kind}:{day}", self.distinct_prefix)
    }

    /// Sets the lifetime of `day`'s three distinct-member keys, in `pipe`
    /// (a key that does not exist is left alone).
    fn expire_distinct(&self, pipe: &mut redis::Pipeline, day: NaiveDate) {
        for kind in DISTINCT_KINDS {
            pipe.cmd("EXPIRE")
                .arg(self.distinct_key(kind, day))
                .arg(DISTINCT_TTL_SECS)
                .ignore();
        }
    }

    /// The four member sets, in the order the place scripts take them.
    fn sets(&self) -> [&str; 4] {
        [&self.users, &self.hidden, &self.visitors, &self.bots]
    }

    /// Whether this store is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.pool, Pools::Cluster(_))
    }

    /// Caps each sorted set at `max` members (default [`DEFAULT_MAX_MEMBERS`]):
    /// after every write the least recently seen are trimmed
    /// (`ZREMRANGEBYRANK key 0 -(max+1)`), so a flood of distinct visitors
    /// cannot grow Redis without bound. Counts then never exceed `max`.
    pub fn with_max_members(mut self, max: usize) -> Self {
        self.max_members = Some(max.max(1));
        self
    }

    /// Lets each sorted set grow without a cap.
    pub fn without_member_cap(mut self) -> Self {
        self.max_members = None;
        self
    }

    /// Keeps members' places ([`Batch::places`]), at most `max` distinct ones
    /// within the window (the builder sets it to
    /// [`max_places`](crate::Builder::max_places) when a place hook is given);
    /// members at further places are counted under
    /// [`OTHER_PLACE`](crate::OTHER_PLACE). Off by default: a store without
    /// places spends nothing on them.
    ///
    /// Keys: `{prefix}:where` (hash: member id, `u:name`, `v:member` or
    /// `b:member`, to `kind|place`), `{prefix}:place-counts` (hash:
    /// `kind|place` to how many members are there), `{prefix}:places` (sorted
    /// set: place to when a member was last placed there, the registry that
    /// `max` caps) and `{prefix}:bot-places` (`name\nplace` to last seen). All
    /// in the one hash slot of `{prefix}`.
    pub fn with_max_places(mut self, max: usize) -> Self {
        self.max_places = Some(max.max(1));
        self
    }

    /// A store on a new pool for `url` (see [`redis_pool`]).
    pub fn from_url(url: &str, prefix: &str) -> Result<Self> {
        Ok(Self::new(redis_pool(url)?, prefix))
    }

    /// Sets how long one round trip may take before it is abandoned (default 2 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key of the users set.
    pub fn users_key(&self) -> &str {
        &self.users
    }

    /// The key of the visitors set.
    pub fn visitors_key(&self) -> &str {
        &self.visitors
    }

    /// The key of the hidden users set.
    pub fn hidden_key(&self) -> &str {
        &self.hidden
    }

    /// The key of the bots set.
    pub fn bots_key(&self) -> &str {
        &self.bots
    }

    /// The key of the bot names set (a bot's display name to when a bot of
    /// that name was last seen).
    pub fn bot_names_key(&self) -> &str {
        &self.bot_names
    }

    /// The key of the record cache hash.
    pub fn record_key(&self) -> &str {
        &self.record
    }

    /// The key of the tick lease (a string: the id of the instance that ticks).
    pub fn lease_key(&self) -> &str {
        &self.lease
    }

    /// Lets the sets expire a while after the last write, so an installation that
    /// is removed leaves nothing behind. Set from the window by the builder.
    pub(crate) fn with_set_ttl(mut self, ttl: Duration) -> Self {
        self.set_ttl_secs = ttl.as_secs().max(60);
        self
    }

    /// Takes scores and cutoffs from this clock's server time: it is refreshed
    /// from a `TIME` riding on each pipeline. Set by the builder.
    pub(crate) fn with_server_clock(mut self, clock: Arc<ServerClock>) -> Self {
        self.server_clock = Some(clock);
        self
    }

    pub(crate) async fn conn(&self) -> Result<Conn> {
        // The pool's wait and create timeouts bound this; the outer timeout covers
        // pools built without them.
        let get = async {
            Ok(match &self.pool {
                Pools::Single(p) => Conn::Single(p.get().await?),
                Pools::Cluster(p) => Conn::Cluster(p.get().await?),
            })
        };
        match tokio::time::timeout(self.timeout, get).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                store: "redis",
                timeout: self.timeout,
            }),
        }
    }

    /// A server clock that has not seen the server yet: its first use asks `TIME`
    /// on its own, and says so, so that the caller moves the time it was handed
    /// (read from the configured clock) onto the server's.
    async fn sync_first(&self, conn: &mut Conn) -> Result<Option<&ServerClock>> {
        match &self.server_clock {
            Some(clock) if !clock.is_synced() => {
                let (secs, micros): ServerTime =
                    self.timed(redis::cmd("TIME").query_async(conn)).await?;
                clock.observe(secs, micros);
                Ok(Some(clock))
            }
            _ => Ok(None),
        }
    }

    /// Learns the server's time now, when a server clock is kept and has not
    /// seen the server yet (the wiring calls it at start).
    pub(crate) async fn sync_clock(&self) -> Result<()> {
        if self.server_clock.as_ref().is_some_and(|c| !c.is_synced()) {
            let mut conn = self.conn().await?;
            self.sync_first(&mut conn).await?;
        }
        Ok(())
    }

    /// Appends `TIME` to a pipeline when a server clock is kept.
    fn ask_time(&self, pipe: &mut redis::Pipeline) {
        if self.server_clock.is_some() {
            pipe.cmd("TIME");
        }
    }

    fn observe(&self, time: Option<ServerTime>) {
        if let (Some(clock), Some((secs, micros))) = (&self.server_clock, time) {
            clock.observe(secs, micros);
        }
    }

    pub(crate) async fn timed<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(Error::Timeout {
                store: "redis",
                timeout: self.timeout,
            }),
        }
    }
}

impl RedisPresence {
    /// The places part of a snapshot: each place's counts and the places of
    /// the listed users, from the cache while the counts' `version` is the one
    /// they were read at, else in one more round trip (only when places are
    /// kept, and only after a change).
    async fn read_places(
        &self,
        conn: &mut Conn,
        version: Option<String>,
        snapshot: &mut Snapshot,
    ) -> Result<()> {
        {
            let cache = crate::sync::lock(&self.places_cache);
            if cache.version.is_some()
                && cache.version == version
                && snapshot
                    .recent
                    .iter()
                    .all(|(name, _)| cache.user_places.contains_key(name))
            {
                snapshot.places.clone_from(&cache.places);
                snapshot.recent_places = snapshot
                    .recent
                    .iter()
                    .map(|(name, _)| cache.user_places.get(name).cloned().flatten())
                    .collect();
                return Ok(());
            }
        }
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(&self.place_counts_key);
        let ids: Vec<String> = snapshot
            .recent
            .iter()
            .map(|(name, _)| format!("u:{name}"))
            .collect();
        if !ids.is_empty() {
            pipe.cmd("HMGET").arg(&self.where_key).arg(&ids);
        }
        let replies: Vec<redis::Value> = self.timed(pipe.query_async(conn)).await?;
        let mut replies = replies.into_iter();
        let mut next = || {
            replies
                .next()
                .ok_or_else(|| corrupt_write("a places reply is missing".into()))
        };
        let counts: HashMap<String, String> = parse(next()?)?;
        let read_version = counts.get(PLACES_VERSION).map(|v| {
            let epoch = counts.get(PLACES_EPOCH).map_or("", String::as_str);
            format!("{epoch}:{v}")
        });
        let mut at: HashMap<&str, Counts> = HashMap::new();
        for (field, n) in &counts {
            let Some((kind, place)) = field.split_once('|') else {
                continue;
            };
            let n = n
                .parse::<i64>()
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
            let c = at.entry(place).or_default();
            match kind {
                "u" => c.users += n,
                "h" => {
                    c.users += n;
                    c.hidden += n;
                }
                "v" => c.visitors += n,
                "b" => c.bots += n,
                _ => {}
            }
        }
        snapshot.places = at
            .into_iter()
            .filter(|(_, c)| *c != Counts::default())
            .map(|(place, counts)| PlaceCount {
                place: place.to_owned(),
                counts,
            })
            .collect();
        let mut user_places = HashMap::new();
        if !ids.is_empty() {
            // `kind|place`; the hash may be a moment newer than the range
            // read before it, which is harmless (a move just made).
            let places: Vec<Option<String>> = parse(next()?)?;
            for ((name, _), place) in snapshot.recent.iter().zip(places) {
                let place =
                    place.and_then(|p| p.split_once('|').map(|(_, place)| place.to_owned()));
                user_places.insert(name.clone(), place);
            }
            snapshot.recent_places = snapshot
                .recent
                .iter()
                .map(|(name, _)| user_places.get(name).cloned().flatten())
                .collect();
        }
        let mut cache = crate::sync::lock(&self.places_cache);
        *cache = PlacesCache {
            version: read_version,
            places: snapshot.places.clone(),
            user_places,
        };
        Ok(())
    }
}

/// The field of the place counts hash that goes up with every change of them.
const PLACES_VERSION: &str = "#version";
/// The field of the place counts hash that names its making: a hash made anew
/// counts its versions from 1 again.
const PLACES_EPOCH: &str = "#epoch";

/// Appends the read of `key`'s `limit` most recently seen members at or after
/// `cutoff`, with their times, most recent first.
fn most_recent(pipe: &mut redis::Pipeline, key: &str, cutoff: i64, limit: usize) {
    pipe.cmd("ZRANGE")
        .arg(key)
        .arg("+inf")
        .arg(cutoff)
        .arg("BYSCORE")
        .arg("REV")
        .arg("LIMIT")
        .arg(0)
        .arg(limit)
        .arg("WITHSCORES");
}

fn corrupt(detail: String) -> Error {
    Error::Corrupt {
        store: "redis record cache",
        detail,
    }
}

/// Parses the cache hash. Redis returns strings; every field is parsed into its
/// number, so comparisons are numeric (the seed compared strings with ints).
fn parse_record(mut h: HashMap<String, String>) -> Result<Option<Record>> {
    if h.is_empty() {
        return Ok(None);
    }
    let mut count = |f: &str| -> Result<u64> {
        let v = h.remove(f).ok_or_else(|| corrupt(format!("{f} missing")))?;
        v.parse().map_err(|_| corrupt(format!("{f} = {v:?}")))
    };
    let users = count("max_users")?;
    let visitors = count("max_visitors")?;
    // Written before there were generations: generation 0.
    let generation = match h.remove("generation") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| corrupt(format!("generation = {v:?}")))?,
    };
    let mut date = |f: &str| -> Result<Option<DateTime<chrono::Utc>>> {
        match h.remove(f).as_deref() {
            None | Some("") => Ok(None),
            Some(v) => {
                let secs: i64 = v.parse().map_err(|_| corrupt(format!("{f} = {v:?}")))?;
                DateTime::from_timestamp(secs, 0)
                    .map(Some)
                    .ok_or_else(|| corrupt(format!("{f} out of range")))
            }
        }
    };
    Ok(Some(Record {
        max_users: users,
        max_users_date: date("max_users_date")?,
        max_visitors: visitors,
        max_visitors_date: date("max_visitors_date")?,
        generation,
    }))
}

/// One reply of a pipeline read as `T`.
fn parse<T: redis::FromRedisValue>(reply: redis::Value) -> Result<T> {
    redis::from_redis_value(reply).map_err(|e| Error::Redis(e.into()))
}

fn corrupt_write(detail: String) -> Error {
    Error::Corrupt {
        store: "redis write",
        detail,
    }
}

/// One reply of a pipeline read as a list of values: an error when it is
/// missing or of another type.
fn reply<T: redis::FromRedisValue>(value: Option<redis::Value>) -> Result<T> {
    parse(value.ok_or_else(|| Error::Corrupt {
        store: "redis",
        detail: "a pipeline answered fewer replies than it sent commands".into(),
    })?)
}

fn date_arg(d: Option<DateTime<chrono::Utc>>) -> String {
    d.map(|d| d.timestamp().to_string()).unwrap_or_default()
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn mark_seen(&self, at: i64, batch: &Batch) -> Result<Marked> {
        if batch.is_empty() {
            return Ok(Marked::written());
        }
        let mut conn = self.conn().await?;
        let at = match self.sync_first(&mut conn).await? {
            Some(clock) => clock.shift(at),
            None => at,
        };
        // Replies read back, in pipeline order: the marker, the day secret's
        // claim, each keyed part, each trim, then TIME.
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(&self.marker);
        let secret_key = batch
            .keyed_by
            .as_ref()
            .map(|k| format!("{}:{}", self.secret_prefix, k.day));
        if let (Some(key), Some(secret_key)) = (&batch.keyed_by, &secret_key) {
            let cmd = pipe.cmd("EVAL").arg(CLAIM_SECRET);
            if self.max_places.is_some() {
                cmd.arg(5)
                    .arg(secret_key)
                    .arg(&self.visitors)
                    .arg(&self.bots)
                    .arg(&self.where_key)
                    .arg(&self.place_counts_key);
            } else {
                cmd.arg(3)
                    .arg(secret_key)
                    .arg(&self.visitors)
                    .arg(&self.bots);
            }
            cmd.arg(&key.candidate)
                .arg(SECRET_TTL_SECS)
                .arg(key.day_start);
        }
        // What each reply that is not ignored answers, in pipeline order.
        enum Reply {
            KeyedPart,
            Trim,
            Placed,
        }
        let mut replies_wanted = Vec::new();
        // The day's distinct members: by the day of the time the batch is
        // stamped with, in the same pipeline.
        let day = DateTime::from_timestamp(at, 0).map(|t| t.date_naive());
        let ttl_at = self.distinct_ttl_at.load(Relaxed);
        let ttl_due = at - ttl_at >= 60 || ttl_at.div_euclid(86_400) != at.div_euclid(86_400);
        for (key, members, keyed, tag, distinct) in [
            (&self.users, &batch.users, false, Some("u:"), Some("users")),
            (
                &self.hidden,
                &batch.hidden_users,
                false,
                Some("u:"),
                Some("hidden"),
            ),
            (
                &self.visitors,
                &batch.visitors,
                true,
                Some("v:"),
                Some("visitors"),
            ),
            (&self.bots, &batch.bots, true, Some("b:"), None),
            (&self.bot_names, &batch.bot_names, false, None, None),
        ] {
            if members.is_empty() {
                continue;
            }
            let distinct = distinct
                .zip(day)
                .map(|(kind, day)| self.distinct_key(kind, day));
            // In parts: Redis serves other clients between commands, and this
            // worker serves requests between parts.
            for (i, part) in members.chunks(ZADD_PART).enumerate() {
                if i > 0 {
                    tokio::task::yield_now().await;
                }
                match (keyed, &batch.keyed_by, &secret_key) {
                    (true, Some(day), Some(secret_key)) => {
                        let cmd = pipe.cmd("EVAL").arg(ADD_IF_KEYED);
                        match &distinct {
                            Some(d) => cmd.arg(3).arg(key).arg(secret_key).arg(d),
                            None => cmd.arg(2).arg(key).arg(secret_key),
                        };
                        cmd.arg(&day.expected).arg(at);
                        for m in part {
                            cmd.arg(m);
                        }
                        replies_wanted.push(Reply::KeyedPart);
                    }
                    _ => {
                        let cmd = pipe.cmd("ZADD").arg(key).arg("GT");
                        for m in part {
                            cmd.arg(at).arg(m);
                        }
                        cmd.ignore();
                        if let Some(d) = &distinct {
                            pipe.cmd("PFADD").arg(d).arg(part).ignore();
                        }
                    }
                }
            }
            if let Some(max) = self.max_members {
                // Keep the `max` most recently seen: drop ranks 0 .. len-max-1.
                let keep = i64::try_from(max).unwrap_or(i64::MAX);
                match (tag, self.max_places) {
                    // Trimmed members leave their places too.
                    (Some(tag), Some(_)) => {
                        pipe.cmd("EVAL")
                            .arg(TRIM_PLACED)
                            .arg(3)
                            .arg(key)
                            .arg(&self.where_key)
                            .arg(&self.place_counts_key)
                            .arg(keep)
                            .arg(tag);
                    }
                    _ => {
                        pipe.cmd("ZREMRANGEBYRANK").arg(key).arg(0).arg(-keep - 1);
                    }
                }
                replies_wanted.push(Reply::Trim);
            }
            pipe.cmd("EXPIRE").arg(key).arg(self.set_ttl_secs).ignore();
        }
        // The day's distinct-member keys expire three days after they were last
        // given a lifetime: all three, whatever this batch holds, so that one
        // made by a write that was not due gets it at the next that is (and
        // the tick gives today's and yesterday's theirs too).
        if let Some(day) = day.filter(|_| ttl_due) {
            self.expire_distinct(&mut pipe, day);
        }
        // Yesterday's pseudonyms of visitors written under today's.
        for (key, retired) in [
            (&self.visitors, &batch.retired_visitors),
            (&self.bots, &batch.retired_bots),
            (&self.visitors, &batch.visitors_now_users),
        ] {
            for part in retired.chunks(ZADD_PART) {
                pipe.cmd("ZREM").arg(key).arg(part).ignore();
            }
        }
        // A user is listed or hidden, never both: the latest report decides.
        // A user who left is neither.
        for (other, members) in [
            (&self.hidden, &batch.users),
            (&self.users, &batch.hidden_users),
            (&self.users, &batch.left_users),
            (&self.hidden, &batch.left_users),
        ] {
            if !members.is_empty() {
                pipe.cmd("ZREM").arg(other).arg(members).ignore();
            }
        }
        if let Some(max_places) = self.max_places {
            let gone: Vec<String> = batch
                .left_users
                .iter()
                .map(|n| format!("u:{n}"))
                .chain(
                    batch
                        .visitors_now_users
                        .iter()
                        .chain(&batch.retired_visitors)
                        .map(|m| format!("v:{m}")),
                )
                .chain(batch.retired_bots.iter().map(|m| format!("b:{m}")))
                .collect();
            if !batch.places.is_empty() || !batch.bot_places.is_empty() || !gone.is_empty() {
                let cmd = pipe
                    .cmd("EVAL")
                    .arg(PLACE)
                    .arg(8)
                    .arg(&self.where_key)
                    .arg(&self.place_counts_key)
                    .arg(&self.places_key)
                    .arg(&self.bot_places_key)
                    .arg(&self.sets()[..])
                    .arg(at)
                    .arg(max_places)
                    .arg(self.set_ttl_secs)
                    .arg(OTHER_PLACE)
                    .arg(batch.places.len());
                for placed in &batch.places {
                    let kind: u8 = match placed.kind {
                        MemberKind::User => 0,
                        MemberKind::HiddenUser => 1,
                        MemberKind::Visitor => 2,
                        MemberKind::Bot => 3,
                    };
                    cmd.arg(kind).arg(&placed.member).arg(&placed.place);
                }
                cmd.arg(batch.bot_places.len());
                for (name, place) in &batch.bot_places {
                    cmd.arg(name).arg(place);
                }
                cmd.arg(gone.len());
                for id in &gone {
                    cmd.arg(id);
                }
                replies_wanted.push(Reply::Placed);
            }
        }
        pipe.cmd("SET")
            .arg(&self.marker)
            .arg(1)
            .arg("EX")
            .arg(self.set_ttl_secs)
            .ignore();
        self.ask_time(&mut pipe);
        let replies: Vec<redis::Value> = self.timed(pipe.query_async(&mut conn)).await?;
        let mut replies = replies.into_iter();
        let mut next = || {
            replies
                .next()
                .ok_or_else(|| corrupt_write("a reply is missing".into()))
        };
        let present: bool = parse(next()?)?;
        let mut marked = Marked::written();
        if batch.keyed_by.is_some() {
            let (held, removed): (String, u64) = parse(next()?)?;
            marked.day_secret = Some(held);
            marked.stale_removed = removed;
        }
        for wanted in replies_wanted {
            let reply = next()?;
            match wanted {
                Reply::KeyedPart => marked.keyed_wrong |= !parse::<bool>(reply)?,
                Reply::Trim => marked.trimmed += parse::<u64>(reply)?,
                Reply::Placed => marked.other_places += parse::<u64>(reply)?,
            }
        }
        if self.server_clock.is_some() {
            let time: ServerTime = parse(next()?)?;
            self.observe(Some(time));
        }
        // The marker outlives the sets' last write by their lifetime: missing
        // well within it, it was taken away with the rest.
        let last = self.last_write.swap(at, Relaxed);
        let ttl = i64::try_from(self.set_ttl_secs).unwrap_or(i64::MAX);
        marked.data_lost = !present && last != 0 && at.saturating_sub(last) < ttl - 60;
        // Keys made anew after a loss get their lifetime at the next write.
        self.distinct_ttl_at.store(
            if marked.data_lost {
                0
            } else if ttl_due {
                at
            } else {
                ttl_at
            },
            Relaxed,
        );
        Ok(marked)
    }

    async fn prune_and_count(&self, cutoff: i64) -> Result<Counts> {
        Ok(self
            .tally(cutoff, &[], HiddenUsers::default())
            .await?
            .counts)
    }

    async fn tally(&self, cutoff: i64, days: &[NaiveDate], hidden: HiddenUsers) -> Result<Tally> {
        let mut conn = self.conn().await?;
        let cutoff = match self.sync_first(&mut conn).await? {
            Some(clock) => clock.shift(cutoff),
            None => cutoff,
        };
        let below = format!("({cutoff}");
        let keys = [&self.users, &self.hidden, &self.visitors, &self.bots];
        let mut pipe = redis::pipe();
        if self.max_places.is_some() {
            // Leavers first leave their places, a step at a time.
            loop {
                let done: usize = self
                    .timed(
                        redis::cmd("EVAL")
                            .arg(PRUNE_PLACED)
                            .arg(6)
                            .arg(&self.where_key)
                            .arg(&self.place_counts_key)
                            .arg(&self.sets()[..])
                            .arg(cutoff)
                            .arg(PRUNE_STEP)
                            .query_async(&mut conn),
                    )
                    .await?;
                if done < PRUNE_STEP {
                    break;
                }
            }
            for key in [&self.places_key, &self.bot_places_key] {
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(key)
                    .arg("-inf")
                    .arg(&below)
                    .ignore();
            }
        }
        for key in keys.into_iter().chain([&self.bot_names]) {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(key)
                .arg("-inf")
                .arg(&below)
                .ignore();
        }
        for key in keys {
            pipe.cmd("ZCARD").arg(key);
        }
        // Each day's distinct users and visitors: PFCOUNT of several keys counts
        // their union, so hidden users join the kind they are counted as.
        for &day in days {
            self.expire_distinct(&mut pipe, day);
            let (users, hidden_key, visitors) = (
                self.distinct_key("users", day),
                self.distinct_key("hidden", day),
                self.distinct_key("visitors", day),
            );
            match hidden {
                HiddenUsers::AsVisitors => {
                    pipe.cmd("PFCOUNT").arg(&users);
                    pipe.cmd("PFCOUNT").arg(&visitors).arg(&hidden_key);
                }
                _ => {
                    pipe.cmd("PFCOUNT").arg(&users).arg(&hidden_key);
                    pipe.cmd("PFCOUNT").arg(&visitors);
                }
            }
        }
        self.ask_time(&mut pipe);
        let mut replies: std::vec::IntoIter<redis::Value> = self
            .timed(pipe.query_async::<Vec<redis::Value>>(&mut conn))
            .await?
            .into_iter();
        let mut next = || reply::<u64>(replies.next());
        let (users, hidden_count, visitors, bots) = (next()?, next()?, next()?, next()?);
        let mut distinct = Vec::with_capacity(days.len());
        for &day in days {
            let (users, visitors) = (next()?, next()?);
            if users > 0 || visitors > 0 {
                distinct.push(Distinct {
                    day,
                    users,
                    visitors,
                });
            }
        }
        if self.server_clock.is_some() {
            let time: ServerTime = reply(replies.next())?;
            self.observe(Some(time));
        }
        Ok(Tally::new(
            Counts {
                users: users + hidden_count,
                hidden: hidden_count,
                visitors,
                bots,
            },
            distinct,
        ))
    }

    async fn last_seen(&self, name: &str) -> Result<Option<i64>> {
        let mut conn = self.conn().await?;
        let score: Option<f64> = self
            .timed(
                redis::cmd("ZSCORE")
                    .arg(&self.users)
                    .arg(name)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(score.map(|s| s as i64))
    }

    async fn snapshot(&self, cutoff: i64, limit: usize) -> Result<Snapshot> {
        let mut conn = self.conn().await?;
        let cutoff = match self.sync_first(&mut conn).await? {
            Some(clock) => clock.shift(cutoff),
            None => cutoff,
        };
        let mut pipe = redis::pipe();
        most_recent(&mut pipe, &self.users, cutoff, limit);
        for key in [&self.users, &self.hidden, &self.visitors, &self.bots] {
            pipe.cmd("ZCOUNT").arg(key).arg(cutoff).arg("+inf");
        }
        pipe.cmd("ZRANGE")
            .arg(&self.bot_names)
            .arg(cutoff)
            .arg("+inf")
            .arg("BYSCORE");
        if self.max_places.is_some() {
            pipe.cmd("HMGET")
                .arg(&self.place_counts_key)
                .arg(PLACES_VERSION)
                .arg(PLACES_EPOCH);
            most_recent(&mut pipe, &self.bot_places_key, cutoff, limit);
        }
        self.ask_time(&mut pipe);
        let replies: Vec<redis::Value> = self.timed(pipe.query_async(&mut conn)).await?;
        let mut replies = replies.into_iter();
        let mut next = || {
            replies
                .next()
                .ok_or_else(|| corrupt_write("a snapshot reply is missing".into()))
        };
        let recent: Vec<(String, i64)> = parse(next()?)?;
        let (listed, hidden, visitors, bots): (u64, u64, u64, u64) = (
            parse(next()?)?,
            parse(next()?)?,
            parse(next()?)?,
            parse(next()?)?,
        );
        let mut bot_names: Vec<String> = parse(next()?)?;
        let places = match self.max_places {
            Some(_) => {
                let (version, epoch): (Option<String>, Option<String>) = parse(next()?)?;
                let version = version.map(|v| format!("{}:{v}", epoch.unwrap_or_default()));
                let bot_places: Vec<(String, i64)> = parse(next()?)?;
                Some((version, bot_places))
            }
            None => None,
        };
        if self.server_clock.is_some() {
            let time: ServerTime = parse(next()?)?;
            self.observe(Some(time));
        }
        bot_names.sort_unstable();
        let mut snapshot = Snapshot {
            recent,
            bots: bot_names,
            counts: Counts {
                users: listed + hidden,
                hidden,
                visitors,
                bots,
            },
            ..Snapshot::default()
        };
        if let Some((version, bot_places)) = places {
            snapshot.bot_places = super::bot_places(bot_places);
            self.read_places(&mut conn, version, &mut snapshot).await?;
        }
        Ok(snapshot)
    }
}

#[async_trait]
impl RecordCache for RedisPresence {
    async fn cached_record(&self) -> Result<Option<Record>> {
        let mut conn = self.conn().await?;
        let h: HashMap<String, String> = self
            .timed(
                redis::cmd("HGETALL")
                    .arg(&self.record)
                    .query_async(&mut conn),
            )
            .await?;
        parse_record(h)
    }

    async fn cache_record(&self, record: &Record, ttl: Duration) -> Result<()> {
        let mut conn = self.conn().await?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = CACHE_RECORD.key(&self.record);
        invocation
            .arg(record.max_users)
            .arg(date_arg(record.max_users_date))
            .arg(record.max_visitors)
            .arg(date_arg(record.max_visitors_date))
            .arg(ttl_ms)
            .arg(record.generation);
        self.timed(invocation.invoke_async::<()>(&mut conn)).await
    }
}

#[async_trait]
impl DaySecrets for RedisPresence {
    async fn day_secret(&self, day: &str) -> Result<Option<String>> {
        let key = format!("{}:{day}", self.secret_prefix);
        let mut conn = self.conn().await?;
        self.timed(redis::cmd("GET").arg(&key).query_async(&mut conn))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(fields: &[(&str, &str)]) -> HashMap<String, String> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cached_fields_parse_to_numbers() {
        let r = parse_record(hash(&[
            ("max_users", "53"),
            ("max_users_date", "1764185364"),
            ("max_visitors", "120"),
            ("max_visitors_date", ""),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(r.max_users, 53);
        assert_eq!(r.max_users_date.unwrap().timestamp(), 1_764_185_364);
        assert_eq!(r.max_visitors, 120);
        assert_eq!(r.max_visitors_date, None);
        assert_eq!(r.generation, 0, "a hash from before generations");
        // Numeric, not lexical: "9" < "53" as numbers, though "9" > "53" as strings.
        assert!(r.is_beaten_by(&Record::seen(54, 0, chrono::Utc::now())));
        let r = parse_record(hash(&[
            ("max_users", "5"),
            ("max_visitors", "6"),
            ("generation", "3"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((r.max_users, r.generation), (5, 3));
    }

    #[test]
    fn empty_hash_is_a_miss_and_garbage_is_an_error() {
        assert_eq!(parse_record(HashMap::new()).unwrap(), None);
        assert!(parse_record(hash(&[("max_users", "x"), ("max_visitors", "1")])).is_err());
        assert!(parse_record(hash(&[("max_users", "1")])).is_err());
    }
}
