//! Configuration: one builder with sensible defaults.

use std::sync::Arc;
use std::time::Duration;

use crate::bots::BotFilter;
use crate::clock::{Clock, SystemClock};
use crate::filters::Skip;
use crate::identity::{ClientIpSource, IdentifyUser, NoUsers};
use crate::places::{DEFAULT_MAX_PLACES, PlaceHook};
use crate::presence::{DEFAULT_MAX_MEMBERS, DaySecrets, HiddenUsers, PresenceStore};
use crate::privacy::VisitorIds;
use crate::record::{DEFAULT_HISTORY_DAYS, HistoryStore, RecordCache, RecordStore};
use crate::{Error, Result};

/// Default window: 15 minutes.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Default tick interval: 60 seconds.
pub const DEFAULT_TICK_INTERVAL: Duration = Duration::from_secs(60);
/// Default interval of the view's refresh (see [`Builder::refresh`]).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(1);
/// Default number of names the view lists (see [`Builder::view_names`]).
pub const DEFAULT_VIEW_NAMES: usize = 1_000;
/// Default cap on open event streams per instance (see [`Builder::max_streams`]).
pub const DEFAULT_MAX_STREAMS: usize = 10_000;
/// Default time to live of the record cache in Redis: 4 hours.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(4 * 60 * 60);
/// Default interval between writes of queued reports: 1 second.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default capacity of the report queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16 * 1024;
/// Default cap on distinct members waiting for one write.
pub const DEFAULT_MAX_PENDING: usize = 100_000;
/// Default resolution of last-seen times: 30 seconds.
pub const DEFAULT_RESOLUTION: Duration = Duration::from_secs(30);
/// Default time shutdown keeps retrying writes to a failing store: 5 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Default prefix length by which IPv6 visitors are grouped: a /64, what one
/// home line or server is usually given.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// Default time a deferred user hook may take once the response is ready: 3 seconds.
pub const DEFAULT_IDENTIFY_TIMEOUT: Duration = Duration::from_secs(3);
/// Default cap on deferred user hooks running at once.
pub const DEFAULT_MAX_IDENTIFYING: usize = 1024;
/// Default number of names in `/online` (or the ceiling, if lower).
pub const DEFAULT_LIMIT: u32 = 100;
/// Default ceiling of `limit` in `/online` (see [`Builder::max_limit`]).
pub const DEFAULT_MAX_LIMIT: u32 = 200;
/// Highest ceiling of `limit` that can be configured.
pub const MAX_LIMIT: u32 = 10_000;
/// Default key prefix; also the site name of the record and the history in
/// Postgres.
pub const DEFAULT_PREFIX: &str = crate::record::DEFAULT_SITE;

pub(crate) enum PresenceChoice {
    Memory,
    Redis(deadpool_redis::Pool),
    RedisCluster(deadpool_redis::cluster::Pool),
    Custom(Arc<dyn PresenceStore>),
}

pub(crate) enum RecordChoice {
    Memory,
    Postgres(sqlx::PgPool),
    Custom(Arc<dyn RecordStore>),
}

/// Builds a [`WhosOnline`](crate::WhosOnline). Without stores it runs in memory (one process only).
///
/// ```no_run
/// use std::time::Duration;
/// use axum_whos_online::WhosOnline;
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = axum_whos_online::redis_pool("redis://127.0.0.1:6379")?;
/// let pg = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/postgres").await?;
/// axum_whos_online::migrate(&pg).await?;
/// let whos = WhosOnline::builder()
///     .redis(redis)
///     .postgres(pg)
///     .window(Duration::from_secs(10 * 60))
///     .build()?;
/// # Ok(()) }
/// ```
pub struct Builder {
    pub(crate) presence: PresenceChoice,
    pub(crate) record: RecordChoice,
    pub(crate) record_cache: Option<Arc<dyn RecordCache>>,
    pub(crate) history: Option<Arc<dyn HistoryStore>>,
    pub(crate) history_days: u32,
    pub(crate) day_secrets: Option<Arc<dyn DaySecrets>>,
    pub(crate) identify: Arc<dyn IdentifyUser>,
    pub(crate) ip_source: ClientIpSource,
    pub(crate) bots: BotFilter,
    pub(crate) places: Option<PlaceHook>,
    pub(crate) max_places: usize,
    pub(crate) skip: Skip,
    pub(crate) visitor_ids: VisitorIds,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) prefix: String,
    pub(crate) window: Duration,
    pub(crate) tick_interval: Duration,
    pub(crate) refresh: Duration,
    pub(crate) view_names: usize,
    pub(crate) background_refresh: bool,
    pub(crate) max_streams: usize,
    pub(crate) background_ticker: bool,
    pub(crate) serve_openapi: bool,
    pub(crate) max_limit: u32,
    pub(crate) hidden_users: HiddenUsers,
    pub(crate) cache_ttl: Duration,
    pub(crate) flush_interval: Duration,
    pub(crate) queue_capacity: usize,
    pub(crate) max_pending: usize,
    pub(crate) resolution: Duration,
    pub(crate) max_members: Option<usize>,
    pub(crate) ipv6_prefix: u8,
    pub(crate) shutdown_grace: Duration,
    pub(crate) server_time: Option<bool>,
    pub(crate) tick_lease: bool,
    pub(crate) identify_timeout: Duration,
    pub(crate) max_identifying: usize,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("prefix", &self.prefix)
            .field("window", &self.window)
            .field("tick_interval", &self.tick_interval)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            presence: PresenceChoice::Memory,
            record: RecordChoice::Memory,
            record_cache: None,
            history: None,
            history_days: DEFAULT_HISTORY_DAYS,
            day_secrets: None,
            identify: Arc::new(NoUsers),
            ip_source: ClientIpSource::ConnectInfo,
            bots: BotFilter::default(),
            places: None,
            max_places: DEFAULT_MAX_PLACES,
            skip: Skip::default(),
            visitor_ids: VisitorIds::default(),
            clock: Arc::new(SystemClock),
            prefix: DEFAULT_PREFIX.to_owned(),
            window: DEFAULT_WINDOW,
            tick_interval: DEFAULT_TICK_INTERVAL,
            refresh: DEFAULT_REFRESH,
            view_names: DEFAULT_VIEW_NAMES,
            background_refresh: true,
            max_streams: DEFAULT_MAX_STREAMS,
            background_ticker: true,
            serve_openapi: true,
            max_limit: DEFAULT_MAX_LIMIT,
            hidden_users: HiddenUsers::default(),
            cache_ttl: DEFAULT_CACHE_TTL,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_pending: DEFAULT_MAX_PENDING,
            resolution: DEFAULT_RESOLUTION,
            max_members: Some(DEFAULT_MAX_MEMBERS),
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            server_time: None,
            tick_lease: true,
            identify_timeout: DEFAULT_IDENTIFY_TIMEOUT,
            max_identifying: DEFAULT_MAX_IDENTIFYING,
        }
    }
}

impl Builder {
    /// Keeps presence in Redis through this pool (see [`redis_pool`](crate::redis_pool)
    /// for one with the timeouts this crate expects). Default: in memory.
    #[must_use]
    pub fn redis(mut self, pool: deadpool_redis::Pool) -> Self {
        self.presence = PresenceChoice::Redis(pool);
        self
    }

    /// Keeps presence in a Redis Cluster through this pool (see
    /// [`redis_cluster_pool`](crate::redis_cluster_pool)). Every key carries the
    /// hash tag `{prefix}`, so one installation lives in one slot and each write
    /// or tick is still one pipelined round trip.
    #[must_use]
    pub fn redis_cluster(mut self, pool: deadpool_redis::cluster::Pool) -> Self {
        self.presence = PresenceChoice::RedisCluster(pool);
        self
    }

    /// Keeps presence in a store of your own.
    #[must_use]
    pub fn presence_store(mut self, store: impl PresenceStore) -> Self {
        self.presence = PresenceChoice::Custom(Arc::new(store));
        self
    }

    /// Keeps the record and the daily history in Postgres through this pool
    /// (a [`PostgresRecord`](crate::PostgresRecord) of the site named by the
    /// [`prefix`](Self::prefix)); run [`migrate`](crate::migrate) first.
    /// Default: in memory.
    #[must_use]
    pub fn postgres(mut self, pool: sqlx::PgPool) -> Self {
        self.record = RecordChoice::Postgres(pool);
        self
    }

    /// Keeps the record in a store of your own. The daily history is then
    /// kept only if a [`history_store`](Self::history_store) is named too.
    #[must_use]
    pub fn record_store(mut self, store: impl RecordStore) -> Self {
        self.record = RecordChoice::Custom(Arc::new(store));
        self
    }

    /// Keeps the daily history in a store of your own. Default: where the
    /// record is kept (Postgres, or memory); none with a
    /// [`record_store`](Self::record_store) of your own.
    #[must_use]
    pub fn history_store(mut self, store: impl HistoryStore) -> Self {
        self.history = Some(Arc::new(store));
        self
    }

    /// How many UTC days the history keeps, today included (default 400,
    /// [`DEFAULT_HISTORY_DAYS`](crate::DEFAULT_HISTORY_DAYS); 1 to 100,000).
    /// Older days are deleted by the instance that ticks, at most once a day.
    #[must_use]
    pub fn history_days(mut self, days: u32) -> Self {
        self.history_days = days;
        self
    }

    /// Caches the record in a cache of your own, in front of the record store.
    /// Default: the presence store's cache (a Redis hash beside the sets, or
    /// memory); none with a [`presence_store`](Self::presence_store) of your own.
    #[must_use]
    pub fn record_cache(mut self, cache: impl RecordCache) -> Self {
        self.record_cache = Some(Arc::new(cache));
        self
    }

    /// Where a [`presence_store`](Self::presence_store) of your own keeps the
    /// day secrets it confirms in [`Batch::keyed_by`](crate::Batch::keyed_by),
    /// read back to retire the previous day's pseudonyms after midnight.
    /// Default: the Redis or memory presence store's own; none with a store of
    /// your own (a visitor online across midnight may then count twice until
    /// the old member ages out).
    #[must_use]
    pub fn day_secrets(mut self, secrets: impl DaySecrets) -> Self {
        self.day_secrets = Some(Arc::new(secrets));
        self
    }

    /// How logged-in users are recognised. Default: [`NoUsers`].
    #[must_use]
    pub fn identify_users(mut self, hook: impl IdentifyUser) -> Self {
        self.identify = Arc::new(hook);
        self
    }

    /// How long a deferred user hook ([`Identity::Deferred`](crate::Identity::Deferred))
    /// may run once the response is ready (default 3 s). Past it the hook's future
    /// is dropped (cancelling it), and the request is not reported, only counted
    /// (`identify_timeouts`): it may be a logged-in user, so it is not guessed to
    /// be a visitor. The response never waits for it either way. Zero is refused
    /// by [`build`](Self::build).
    #[must_use]
    pub fn identify_timeout(mut self, timeout: Duration) -> Self {
        self.identify_timeout = timeout;
        self
    }

    /// Most deferred user hooks running at once on spawned tasks (default 1024),
    /// so that a slow or hanging session store cannot pile up tasks and memory
    /// without bound. When that many are running, a request whose hook cannot
    /// answer at once is not reported, only counted (`identify_over_cap`); the
    /// request itself goes on untouched. Zero is refused by [`build`](Self::build).
    #[must_use]
    pub fn max_identifying(mut self, max: usize) -> Self {
        self.max_identifying = max;
        self
    }

    /// Where the visitor's address comes from. Default:
    /// [`ClientIpSource::ConnectInfo`], the TCP peer, trusting no header. Name a
    /// header only when a proxy you run sets it.
    #[must_use]
    pub fn client_ip_source(mut self, source: ClientIpSource) -> Self {
        self.ip_source = source;
        self
    }

    /// Keys visitor pseudonyms with this secret instead of a random key per day
    /// kept in Redis: the day key is derived from it, so it is the same on every
    /// instance and across restarts. Keep it secret; rotate it like any other.
    /// See the [privacy notes](crate#privacy).
    #[must_use]
    pub fn visitor_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.visitor_ids = VisitorIds::Hashed {
            secret: Some(secret.into().into()),
        };
        self
    }

    /// Stores visitors' raw IP addresses instead of keyed hashes (default
    /// false). Opt in only if you have a lawful need and say so in your privacy
    /// notice: the addresses sit in Redis for the window.
    #[must_use]
    pub fn raw_visitor_addresses(mut self, raw: bool) -> Self {
        self.visitor_ids = if raw {
            VisitorIds::Raw
        } else {
            VisitorIds::default()
        };
        self
    }

    /// How bots are recognised (default: [`BotFilter::default`], the built-in
    /// `User-Agent` patterns). [`BotFilter::none`] counts them as visitors.
    #[must_use]
    pub fn bots(mut self, filter: BotFilter) -> Self {
        self.bots = filter;
        self
    }

    /// Names where each request is ("users browsing this forum"): `hook` is a
    /// synchronous function of the request's parts that returns a place (a
    /// short string, cut to [`MAX_PLACE_LEN`](crate::MAX_PLACE_LEN) bytes) or
    /// `None` for a request that moves nobody (assets, API polls, the live
    /// stream). Ready hooks: [`place_by_matched_path`](crate::place_by_matched_path)
    /// (axum's route template, `/forum/{id}`; add the layer with
    /// `Router::layer` for it) and [`place_by_path`](crate::place_by_path).
    ///
    /// Each member's latest place is written with its last-seen time, in the
    /// same batched write, and read through the view:
    /// [`WhosOnline::online_in`](crate::WhosOnline::online_in),
    /// [`View::places`](crate::View::places), `GET /online?place=P` and
    /// `GET /online/places`. Without a hook (the default) there are no places
    /// and nothing is spent on them.
    ///
    /// ```
    /// use axum_whos_online::{WhosOnline, place_by_matched_path};
    /// let builder = WhosOnline::builder().places(place_by_matched_path);
    /// ```
    #[must_use]
    pub fn places<F>(mut self, hook: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.places = Some(Arc::new(hook));
        self
    }

    /// At most this many distinct places are tracked within the window (default
    /// [`DEFAULT_MAX_PLACES`](crate::DEFAULT_MAX_PLACES), 10,000; at least 1):
    /// a member at a new place beyond it is counted under
    /// [`OTHER_PLACE`](crate::OTHER_PLACE) (and in the `places_overflowed`
    /// counter), so that a crawler walking a million URLs cannot grow the store.
    #[must_use]
    pub fn max_places(mut self, max: usize) -> Self {
        self.max_places = max;
        self
    }

    /// Does not report requests whose path starts with `prefix` (whole segments:
    /// `/static` skips `/static/app.css`, not `/statistics`). May be repeated.
    #[must_use]
    pub fn skip_path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.skip.add_prefix(prefix.into());
        self
    }

    /// Does not report requests for which `predicate` holds. May be repeated.
    ///
    /// ```
    /// use axum_whos_online::WhosOnline;
    /// // Leave out health checks and the polling of the fragment itself.
    /// let builder = WhosOnline::builder()
    ///     .skip_path_prefix("/healthz")
    ///     .skip_if(|req| req.uri.path() == "/online" && req.method == http::Method::GET);
    /// ```
    #[must_use]
    pub fn skip_if<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&http::request::Parts) -> bool + Send + Sync + 'static,
    {
        self.skip.add_predicate(Arc::new(predicate));
        self
    }

    /// The source of "now" (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Prefix of the Redis keys (default `whos_online`); keys are `{prefix}:users`,
    /// `{prefix}:visitors` and `{prefix}:record`, braces included.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a member counts as online after its last request (default 15 min).
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How often the ticker prunes, counts and raises the record (default 60 s).
    #[must_use]
    pub fn tick_interval(mut self, every: Duration) -> Self {
        self.tick_interval = every;
        self
    }

    /// Whether to run the ticker in the background (default true). Without it,
    /// call [`WhosOnline::tick_now`](crate::WhosOnline::tick_now) yourself, e.g. from tests or a cron job.
    #[must_use]
    pub fn background_ticker(mut self, run: bool) -> Self {
        self.background_ticker = run;
        self
    }

    /// How often the view is refreshed (default 1 s, [`DEFAULT_REFRESH`];
    /// 10 ms to 1 hour): one pipelined read of the presence store and one of
    /// the record cache per refresh, whatever the traffic. Every read of the
    /// counts ([`WhosOnline::view`](crate::WhosOnline::view), `GET /online`,
    /// `GET /stats`, the event stream) is at most this old while the stores answer.
    #[must_use]
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// How many names the view lists: the most recently seen users (default
    /// 1,000, [`DEFAULT_VIEW_NAMES`]; 0 to 10,000). `GET /online?limit=N` and
    /// [`WhosOnline::online`](crate::WhosOnline::online) answer at most this
    /// many; the counts are always complete.
    #[must_use]
    pub fn view_names(mut self, names: usize) -> Self {
        self.view_names = names;
        self
    }

    /// Whether to refresh the view in the background (default true). Without
    /// it, the view changes only at [`WhosOnline::refresh_now`](crate::WhosOnline::refresh_now),
    /// [`tick_now`](crate::WhosOnline::tick_now) and
    /// [`reset_record`](crate::WhosOnline::reset_record): for tests.
    #[must_use]
    pub fn background_refresh(mut self, run: bool) -> Self {
        self.background_refresh = run;
        self
    }

    /// The most event streams (`GET /online/events`) open at once on this
    /// instance (default 10,000, [`DEFAULT_MAX_STREAMS`]); beyond it a new one
    /// is answered `503` with `Retry-After`. Each open stream holds a
    /// connection and about 18 KiB of the server's memory (`bench/streams.sh`); none
    /// costs a store command.
    #[must_use]
    pub fn max_streams(mut self, max: usize) -> Self {
        self.max_streams = max;
        self
    }

    /// Whether the router fragment serves `GET /openapi.json` (default true; needs
    /// the `openapi` feature, on by default).
    #[must_use]
    pub fn serve_openapi(mut self, serve: bool) -> Self {
        self.serve_openapi = serve;
        self
    }

    /// The most names `GET /online?limit=N` may ask for (default 200,
    /// [`DEFAULT_MAX_LIMIT`](crate::DEFAULT_MAX_LIMIT); 1 to 10,000,
    /// [`MAX_LIMIT`](crate::MAX_LIMIT)). A higher `limit` is a JSON 400. Keep it
    /// low on a public site: each name read costs the store and the response.
    /// [`WhosOnline::online`](crate::WhosOnline::online) itself takes any limit.
    #[must_use]
    pub fn max_limit(mut self, max: u32) -> Self {
        self.max_limit = max;
        self
    }

    /// How users who chose to be hidden are counted (default
    /// [`HiddenUsers::AsUsers`]: in `user_count`, so that `user_count` minus the
    /// listed names tells how many hidden users are online).
    /// [`HiddenUsers::AsVisitors`] counts them as guests instead, so no
    /// difference reveals them. Either way they are never listed.
    #[must_use]
    pub fn hidden_users(mut self, how: HiddenUsers) -> Self {
        self.hidden_users = how;
        self
    }

    /// Time to live of the record cache in Redis (default 4 h).
    #[must_use]
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How often queued reports are written (default 1 s).
    #[must_use]
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush_interval = every;
        self
    }

    /// Capacity of the report queue (default 16384). When it is full, reports
    /// are dropped and counted; requests never wait.
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Most distinct members waiting for one write (default 100 000), besides
    /// those of the write already out. When that many are waiting they are
    /// written at once, without waiting for the flush interval; while writes are
    /// failing, more are dropped and counted (`pending_dropped`), which bounds
    /// memory while Redis is down.
    #[must_use]
    pub fn max_pending(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    /// Caps each set (users, hidden users, visitors, bots) at `max` members
    /// (default [`DEFAULT_MAX_MEMBERS`], one million); after each write the
    /// least recently seen beyond it are dropped, counted (`members_trimmed`)
    /// and logged. Bounds the presence store under a flood of distinct
    /// visitors; counts (and so the record) never exceed `max`. Applies to the
    /// Redis and in-memory stores alike, not to a store of your own. Zero is
    /// refused by [`build`](Self::build).
    #[must_use]
    pub fn max_members(mut self, max: usize) -> Self {
        self.max_members = Some(max);
        self
    }

    /// Lets each set grow without a cap (see [`max_members`](Self::max_members)):
    /// then one client with many addresses can grow the store without bound.
    #[must_use]
    pub fn unlimited_members(mut self) -> Self {
        self.max_members = None;
        self
    }

    /// Groups IPv6 visitors by their first `bits` bits before they are keyed
    /// (default 64): one home line or server is usually given a whole /64, so
    /// without grouping one host could pose as 2^64 visitors. IPv4 addresses
    /// count one each (/32); IPv4-mapped IPv6 addresses count as IPv4. 128
    /// counts every IPv6 address apart. Outside 1 to 128 is refused by
    /// [`build`](Self::build).
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits;
        self
    }

    /// How long [`shutdown`](crate::WhosOnline::shutdown) keeps retrying the last
    /// writes while the presence store fails (default 5 s); what is still
    /// unwritten then is reported as lost.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Whether scores and the prune cutoff come from the Redis server's clock
    /// (default: on whenever presence is in Redis). The offset between the
    /// configured [`clock`](Self::clock) and Redis `TIME` is refreshed from a
    /// `TIME` appended to each pipeline, so instances whose clocks disagree still
    /// age members alike. Turn it off to drive a [`ManualClock`](crate::ManualClock)
    /// against Redis in tests. Without Redis it has no effect.
    #[must_use]
    pub fn server_time(mut self, on: bool) -> Self {
        self.server_time = Some(on);
        self
    }

    /// Whether instances sharing a Redis take turns through a lease so that one
    /// of them runs the background tick per interval (default true). The lease is
    /// `{prefix}:tick-lease` and lasts two tick intervals past each renewal.
    /// Correctness never depends on it; turned off, every instance ticks. Without
    /// Redis there is no lease. [`WhosOnline::tick_now`](crate::WhosOnline::tick_now) always ticks.
    #[must_use]
    pub fn tick_lease(mut self, on: bool) -> Self {
        self.tick_lease = on;
        self
    }

    /// How fresh a member's stored last-seen time is kept (default 30 s): a member
    /// already handed on for writing within the last `resolution` is not handed
    /// on again, so a busy member costs one write per `resolution`, not one per
    /// request. Each member falls due after a fixed share of 3/4 to all of it, so
    /// members first seen together are not all written again in the same second.
    /// The check runs in the layer against a fixed-size table (512 KiB), so memory
    /// stays bounded under a flood of distinct visitors.
    ///
    /// A member therefore leaves the count up to `resolution` early. Whole
    /// seconds count; it is capped at a tenth of the [`window`](Self::window);
    /// zero writes every report (still coalesced per flush).
    #[must_use]
    pub fn resolution(mut self, resolution: Duration) -> Self {
        self.resolution = resolution;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_owned()));
        if self.window.as_secs() == 0 || self.window > Duration::from_secs(366 * 24 * 3600) {
            return bad("window must be from one second to 366 days");
        }
        if self.tick_interval.is_zero() || self.flush_interval.is_zero() {
            return bad("tick and flush intervals must be above zero");
        }
        if self.refresh < Duration::from_millis(10) || self.refresh > Duration::from_secs(3600) {
            return bad("the view's refresh interval must be from 10 ms to 1 hour");
        }
        if self.view_names > MAX_LIMIT as usize {
            return bad("the view lists at most 10000 names");
        }
        if self.max_members == Some(0) {
            return bad("max members must be above zero (unlimited_members() lifts the cap)");
        }
        if !(1..=1_000_000).contains(&self.max_places) {
            return bad("max places must be from 1 to 1000000");
        }
        if !(1..=MAX_LIMIT).contains(&self.max_limit) {
            return bad("the /online limit ceiling must be from 1 to 10000");
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            return bad("the IPv6 prefix must be from 1 to 128 bits");
        }
        if self.queue_capacity == 0 || self.max_pending == 0 {
            return bad("queue capacity and max pending must be above zero");
        }
        if self.identify_timeout.is_zero() {
            return bad("identify timeout must be above zero");
        }
        if self.max_identifying == 0 || self.max_identifying > tokio::sync::Semaphore::MAX_PERMITS {
            return bad("max identifying must be above zero (and below 2^61)");
        }
        if !(1..=100_000).contains(&self.history_days) {
            return bad("history days must be from 1 to 100000");
        }
        if self.cache_ttl.as_millis() == 0 {
            return bad("cache TTL must be at least one millisecond");
        }
        if self.prefix.is_empty()
            || self.prefix.len() > 64
            || !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-:.".contains(c))
        {
            return bad("prefix must be 1 to 64 of A-Z a-z 0-9 _ - : .");
        }
        Ok(())
    }
}
