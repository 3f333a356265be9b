//! The wiring: turns a validated [`Builder`] into running stores, queue and
//! background tasks, and the handle over them. The only module that knows every
//! other; nothing below imports it.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::{ServerClock, Settle};
use crate::config::{Builder, PresenceChoice, RecordChoice};
use crate::counters::{Counters, LogLimiter};
use crate::dedupe::Dedupe;
use crate::handle::{Shared, Tasks, WhosOnline};
use crate::layer::Reporting;
use crate::presence::{DaySecrets, MemoryPresence, PresenceStore, RedisPresence, TickLease};
use crate::privacy::{Pseudonymizer, VisitorIds};
use crate::record::{
    CachingRecord, HistoryStore, MemoryRecord, PostgresRecord, RecordCache, RecordStore,
};
use crate::refresher::Refresher;
use crate::reporter::{Reporter, Waiting, Writer};
use crate::ticker::{Ticker, TickerState};
use crate::{Error, Result};

impl Builder {
    /// Validates the settings and starts the reporter and (unless turned off) the
    /// ticker on the current Tokio runtime.
    pub fn build(self) -> Result<WhosOnline> {
        self.validate()?;
        let shared_store = matches!(
            self.presence,
            PresenceChoice::Redis(_) | PresenceChoice::RedisCluster(_)
        );
        if shared_store && matches!(self.visitor_ids, VisitorIds::Hashed { secret: None }) {
            tracing::warn!(
                "whos-online: no visitor_secret is set, so each day's pseudonym key is kept in \
                 Redis beside the visitors: anyone who can read Redis can recover visitors' IP \
                 addresses. Set Builder::visitor_secret (e.g. from WHOS_ONLINE_VISITOR_SECRET)."
            );
        }
        if shared_store && matches!(self.record, RecordChoice::Memory) && self.history.is_none() {
            tracing::warn!(
                "whos-online: presence is in Redis but the record and the daily history are in \
                 this process's memory: each instance keeps its own, and they differ. Set \
                 Builder::postgres to share them."
            );
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("build() must be called inside a Tokio runtime".into()))?;
        let instance_id = crate::presence::new_instance_id();
        // De-duplication reads the configured clock: it only needs differences.
        let dedupe = Arc::new(Dedupe::new(
            self.resolution.min(self.window / 10),
            Arc::clone(&self.clock),
        ));
        let known = crate::known::KnownUsers::new(
            self.resolution.min(self.window / 10),
            Arc::clone(&self.clock),
        );
        let mut clock = self.clock;
        let mut lease = None;
        let mut settle = Settle::default();
        let places = self.places.is_some();
        let mut wire_redis = |store: RedisPresence| -> Arc<RedisPresence> {
            let mut store = store.with_set_ttl(self.window.saturating_mul(2));
            if places {
                store = store.with_max_places(self.max_places);
            }
            store = match self.max_members {
                Some(max) => store.with_max_members(max),
                None => store.without_member_cap(),
            };
            if self.server_time.unwrap_or(true) {
                let server = Arc::new(ServerClock::new(Arc::clone(&clock)));
                store = store.with_server_clock(Arc::clone(&server));
                settle = Settle(Some(Arc::clone(&server)));
                clock = server;
                // The first sync at once: the tasks wait for it before they
                // read the clock (see ServerClock::ready).
                let syncing = store.clone();
                runtime.spawn(async move {
                    if let Err(e) = syncing.sync_clock().await {
                        tracing::debug!(error = %e, "whos-online: Redis time not read at start");
                    }
                });
            }
            if self.tick_lease {
                lease = Some(TickLease::new(
                    store.clone(),
                    instance_id.clone(),
                    self.tick_interval.saturating_mul(2),
                ));
            }
            Arc::new(store)
        };
        // The built-in presence stores also keep the day secrets and cache the
        // record; a store of the host's own brings either, or goes without.
        let (presence, secrets, cache) = match self.presence {
            PresenceChoice::Memory => three(Arc::new(
                match self.max_members {
                    Some(max) => MemoryPresence::new().with_max_members(max),
                    None => MemoryPresence::new().without_member_cap(),
                }
                .with_max_places(self.max_places),
            )),
            PresenceChoice::Redis(pool) => {
                three(wire_redis(RedisPresence::new(pool, &self.prefix)))
            }
            PresenceChoice::RedisCluster(pool) => {
                three(wire_redis(RedisPresence::cluster(pool, &self.prefix)))
            }
            PresenceChoice::Custom(store) => (store, None, None),
        };
        let secrets = self.day_secrets.or(secrets);
        let cache = self.record_cache.or(cache);
        // The built-in record stores keep the history too.
        let (record, history): (Arc<dyn RecordStore>, Option<Arc<dyn HistoryStore>>) =
            match self.record {
                RecordChoice::Memory => both(Arc::new(MemoryRecord::new())),
                RecordChoice::Postgres(pool) => {
                    both(Arc::new(PostgresRecord::new(pool).with_site(&self.prefix)))
                }
                RecordChoice::Custom(store) => (store, None),
            };
        let history = self.history.or(history);
        let counters = Arc::new(Counters::default());
        let record = Arc::new(CachingRecord::new(
            record,
            cache,
            self.cache_ttl,
            Arc::clone(&counters),
        ));
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let cancel = CancellationToken::new();
        let ticker = Arc::new(Ticker {
            presence: Arc::clone(&presence),
            record,
            clock: Arc::clone(&clock),
            settle: settle.clone(),
            window: self.window,
            counters: Arc::clone(&counters),
            hidden_users: self.hidden_users,
            history,
            history_days: self.history_days,
            state: TickerState::new(instance_id, lease),
        });
        let refresher = Arc::new(Refresher::new(
            Arc::clone(&presence),
            Arc::clone(&ticker),
            Arc::clone(&clock),
            settle.clone(),
            self.window,
            self.view_names,
            self.hidden_users,
            Arc::clone(&counters),
        ));
        let shared = Arc::new(Shared {
            presence: Arc::clone(&presence),
            window: self.window,
            counters: Arc::clone(&counters),
            reporting: Arc::new(Reporting {
                tx,
                identify: self.identify,
                ip_source: self.ip_source,
                ipv6_prefix: self.ipv6_prefix,
                bots: self.bots,
                places: self.places,
                skip: self.skip,
                counters: Arc::clone(&counters),
                drop_log: LogLimiter::default(),
                identify_log: LogLimiter::default(),
                known,
                dedupe: Arc::clone(&dedupe),
                identify_timeout: self.identify_timeout,
                identifying: Arc::new(tokio::sync::Semaphore::new(self.max_identifying)),
            }),
            ticker: Arc::clone(&ticker),
            refresher: Arc::clone(&refresher),
            refresh: self.refresh,
            serve_openapi: self.serve_openapi,
            max_limit: self.max_limit,
            open_streams: std::sync::atomic::AtomicUsize::new(0),
            max_streams: self.max_streams,
            streams_end: CancellationToken::new(),
            cancel: cancel.clone(),
            tasks: Mutex::default(),
        });
        let reporter = Reporter {
            writer: Writer {
                presence,
                secrets,
                clock,
                settle,
                counters,
                pseudonyms: Arc::new(Pseudonymizer::new(self.visitor_ids)),
                window: self.window,
                dedupe,
                trim_log: Arc::default(),
            },
            waiting: Waiting::default(),
            max_pending: self.max_pending,
            error_log: LogLimiter::default(),
            failing: None,
            shutdown_grace: self.shutdown_grace,
            left_lately: Default::default(),
        };
        let tasks = Tasks {
            reporter: Some(runtime.spawn(reporter.run(rx, self.flush_interval, cancel.clone()))),
            ticker: self.background_ticker.then(|| {
                runtime.spawn(crate::ticker::run(
                    Arc::downgrade(&ticker),
                    self.tick_interval,
                    cancel.clone(),
                ))
            }),
            refresher: self.background_refresh.then(|| {
                runtime.spawn(crate::refresher::run(
                    Arc::downgrade(&refresher),
                    self.refresh,
                    cancel,
                ))
            }),
        };
        *crate::sync::lock(&shared.tasks) = tasks;
        Ok(WhosOnline { shared })
    }
}

/// A built-in presence store in its three roles: presence, day secrets, record cache.
type Roles = (
    Arc<dyn PresenceStore>,
    Option<Arc<dyn DaySecrets>>,
    Option<Arc<dyn RecordCache>>,
);

fn three<S: PresenceStore + DaySecrets + RecordCache>(store: Arc<S>) -> Roles {
    (
        Arc::clone(&store) as Arc<dyn PresenceStore>,
        Some(Arc::clone(&store) as Arc<dyn DaySecrets>),
        Some(store as Arc<dyn RecordCache>),
    )
}

/// A built-in record store in its two roles: the record and the history.
fn both<S: RecordStore + HistoryStore>(
    store: Arc<S>,
) -> (Arc<dyn RecordStore>, Option<Arc<dyn HistoryStore>>) {
    (
        Arc::clone(&store) as Arc<dyn RecordStore>,
        Some(store as Arc<dyn HistoryStore>),
    )
}
