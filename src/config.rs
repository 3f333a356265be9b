//! Configuration: one builder with sensible defaults.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum_client_ip::ClientIpSource;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::counters::{Counters, LogLimiter};
use crate::handle::{Shared, WhosOnline};
use crate::identity::{IdentifyUser, NoUsers};
use crate::layer::Reporting;
use crate::presence::{MemoryPresence, PresenceStore, RedisPresence};
use crate::record::{MemoryRecord, PostgresRecord, RecordStore};
use crate::reporter::Reporter;
use crate::ticker::TickerState;
use crate::{Error, Result};

/// Default window: 15 minutes.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Default tick interval: 60 seconds.
pub const DEFAULT_TICK_INTERVAL: Duration = Duration::from_secs(60);
/// Default time to live of the record cache in Redis: 4 hours.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(4 * 60 * 60);
/// Default interval between writes of queued reports: 1 second.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default capacity of the report queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16 * 1024;
/// Default cap on distinct members waiting for one write.
pub const DEFAULT_MAX_PENDING: usize = 100_000;
/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "whos_online";

enum PresenceChoice {
    Memory,
    Redis(deadpool_redis::Pool),
    Custom(Arc<dyn PresenceStore>),
}

enum RecordChoice {
    Memory,
    Postgres(sqlx::PgPool),
    Custom(Arc<dyn RecordStore>),
}

/// Builds a [`WhosOnline`]. Without stores it runs in memory (one process only).
///
/// ```no_run
/// use std::time::Duration;
/// use whos_online::WhosOnline;
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = whos_online::redis_pool("redis://127.0.0.1:6379")?;
/// let pg = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/postgres").await?;
/// whos_online::migrate(&pg).await?;
/// let whos = WhosOnline::builder()
///     .redis(redis)
///     .postgres(pg)
///     .window(Duration::from_secs(10 * 60))
///     .build()?;
/// # Ok(()) }
/// ```
pub struct Builder {
    presence: PresenceChoice,
    record: RecordChoice,
    identify: Arc<dyn IdentifyUser>,
    ip_source: ClientIpSource,
    clock: Arc<dyn Clock>,
    prefix: String,
    window: Duration,
    tick_interval: Duration,
    background_ticker: bool,
    cache_ttl: Duration,
    flush_interval: Duration,
    queue_capacity: usize,
    max_pending: usize,
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
            identify: Arc::new(NoUsers),
            ip_source: ClientIpSource::ConnectInfo,
            clock: Arc::new(SystemClock),
            prefix: DEFAULT_PREFIX.to_owned(),
            window: DEFAULT_WINDOW,
            tick_interval: DEFAULT_TICK_INTERVAL,
            background_ticker: true,
            cache_ttl: DEFAULT_CACHE_TTL,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

impl Builder {
    /// Keeps presence in Redis through this pool (see [`redis_pool`](crate::redis_pool)
    /// for one with the timeouts this crate expects). Default: in memory.
    pub fn redis(mut self, pool: deadpool_redis::Pool) -> Self {
        self.presence = PresenceChoice::Redis(pool);
        self
    }

    /// Keeps presence in a store of your own.
    pub fn presence_store(mut self, store: impl PresenceStore) -> Self {
        self.presence = PresenceChoice::Custom(Arc::new(store));
        self
    }

    /// Keeps the record in Postgres through this pool; run [`migrate`](crate::migrate)
    /// first. Default: in memory.
    pub fn postgres(mut self, pool: sqlx::PgPool) -> Self {
        self.record = RecordChoice::Postgres(pool);
        self
    }

    /// Keeps the record in a store of your own.
    pub fn record_store(mut self, store: impl RecordStore) -> Self {
        self.record = RecordChoice::Custom(Arc::new(store));
        self
    }

    /// How logged-in users are recognised. Default: [`NoUsers`].
    pub fn identify_users(mut self, hook: impl IdentifyUser) -> Self {
        self.identify = Arc::new(hook);
        self
    }

    /// Where the visitor's address comes from. Default:
    /// [`ClientIpSource::ConnectInfo`], the TCP peer, trusting no header. Name a
    /// header only when a proxy you run sets it.
    pub fn client_ip_source(mut self, source: ClientIpSource) -> Self {
        self.ip_source = source;
        self
    }

    /// The source of "now" (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Prefix of the Redis keys (default `whos_online`); keys are `{prefix}:users`,
    /// `{prefix}:visitors` and `{prefix}:record`, braces included.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a member counts as online after its last request (default 15 min).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How often the ticker prunes, counts and raises the record (default 60 s).
    pub fn tick_interval(mut self, every: Duration) -> Self {
        self.tick_interval = every;
        self
    }

    /// Whether to run the ticker in the background (default true). Without it,
    /// call [`WhosOnline::tick_now`] yourself, e.g. from tests or a cron job.
    pub fn background_ticker(mut self, run: bool) -> Self {
        self.background_ticker = run;
        self
    }

    /// Time to live of the record cache in Redis (default 4 h).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How often queued reports are written (default 1 s).
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush_interval = every;
        self
    }

    /// Capacity of the report queue (default 16384). When it is full, reports
    /// are dropped and counted; requests never wait.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Most distinct members held for one write (default 100 000); more are
    /// dropped and counted, which bounds memory while Redis is down.
    pub fn max_pending(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_owned()));
        if self.window.as_secs() == 0 {
            return bad("window must be at least one second");
        }
        if self.tick_interval.is_zero() || self.flush_interval.is_zero() {
            return bad("tick and flush intervals must be above zero");
        }
        if self.queue_capacity == 0 || self.max_pending == 0 {
            return bad("queue capacity and max pending must be above zero");
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

    /// Validates the settings and starts the reporter and (unless turned off) the
    /// ticker on the current Tokio runtime.
    pub fn build(self) -> Result<WhosOnline> {
        self.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("build() must be called inside a Tokio runtime".into()))?;
        let presence: Arc<dyn PresenceStore> = match self.presence {
            PresenceChoice::Memory => Arc::new(MemoryPresence::new()),
            PresenceChoice::Redis(pool) => {
                Arc::new(RedisPresence::new(pool, &self.prefix).with_set_ttl(self.window * 2))
            }
            PresenceChoice::Custom(store) => store,
        };
        let record: Arc<dyn RecordStore> = match self.record {
            RecordChoice::Memory => Arc::new(MemoryRecord::new()),
            RecordChoice::Postgres(pool) => Arc::new(PostgresRecord::new(pool)),
            RecordChoice::Custom(store) => store,
        };
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared {
            presence: Arc::clone(&presence),
            record,
            clock: Arc::clone(&self.clock),
            window: self.window,
            cache_ttl: self.cache_ttl,
            counters: Arc::clone(&counters),
            reporting: Arc::new(Reporting {
                tx,
                identify: self.identify,
                ip_source: self.ip_source,
                counters: Arc::clone(&counters),
                drop_log: LogLimiter::default(),
            }),
            ticker: TickerState::default(),
            cancel: cancel.clone(),
            tasks: Mutex::new(Vec::new()),
        });
        let reporter = Reporter {
            presence,
            clock: self.clock,
            counters,
            users: HashMap::new(),
            visitors: HashSet::new(),
            bots: HashSet::new(),
            max_pending: self.max_pending,
            error_log: LogLimiter::default(),
        };
        let mut tasks = vec![runtime.spawn(reporter.run(rx, self.flush_interval, cancel.clone()))];
        if self.background_ticker {
            tasks.push(runtime.spawn(crate::ticker::run(
                Arc::downgrade(&shared),
                self.tick_interval,
                cancel,
            )));
        }
        *shared.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(WhosOnline { shared })
    }
}
