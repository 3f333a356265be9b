//! # axum-whos-online
//!
//! "Who's online" for [axum]: the logged-in users and the number of anonymous
//! visitors seen in the last few minutes, and the all-time record ("most users
//! ever online was 53 on 2026-11-26 19:29 UTC"), correct across many app
//! instances and invisible in request latency.
//!
//! * [`WhosOnlineLayer`] reports every request as a user (through an
//!   [`IdentifyUser`] hook such as [`SessionUser`]), a bot (by `User-Agent`) or a
//!   visitor (by client IP) into a bounded queue. It never waits: a full queue drops and counts.
//! * A reporter task coalesces the queue and writes each batch in one pipelined
//!   `ZADD ... GT` to Redis sorted sets ([`RedisPresence`]; [`MemoryPresence`] is the
//!   embedded default).
//! * A ticker task prunes and counts the sets and raises the record in Postgres
//!   ([`PostgresRecord`]; [`MemoryRecord`] is the embedded default), atomically and
//!   never downwards, cached in a Redis hash.
//! * A refresher task keeps one [`View`] per instance (counts, the most recent
//!   names, the record, `as_of`), read by [`WhosOnline::view`] without I/O: a
//!   page can render the footer on every request for free.
//! * [`WhosOnline::router`] serves `GET /online` and `GET /stats` as JSON, and
//!   `GET /online/events` as server-sent events, all from the view (and, with
//!   the `openapi` feature, `GET /openapi.json`).
//!
//! ```no_run
//! use std::{net::SocketAddr, time::Duration};
//! use axum::{Router, routing::get};
//! use tower_sessions::{MemoryStore, SessionManagerLayer};
//! use axum_whos_online::{SessionUser, WhosOnline};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let pg = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/postgres").await?;
//!     axum_whos_online::migrate(&pg).await?;
//!     let whos = WhosOnline::builder()
//!         .redis(axum_whos_online::redis_pool("redis://127.0.0.1:6379")?)
//!         .postgres(pg)
//!         .identify_users(SessionUser::new("username"))
//!         // Keys visitor pseudonyms; without it, Redis readers can recover addresses.
//!         .visitor_secret(std::env::var("WHOS_ONLINE_VISITOR_SECRET")?)
//!         .build()?;
//!
//!     let app = Router::new()
//!         .route("/", get(|| async { "hello" }))
//!         .merge(whos.router())
//!         .layer(whos.layer()) // inside the session layer: it reads the session
//!         .layer(SessionManagerLayer::new(MemoryStore::default()));
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     // Visitors are keyed by the TCP peer address: serve with connect info.
//!     let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//!         .with_graceful_shutdown(whos.shutdown_signal()); // Ctrl-C or SIGTERM; ends the streams
//!     whos.graceful(server, Duration::from_secs(10)).await?; // at most 10 s after the signal
//!     whos.shutdown().await?; // writes every queued report before exit
//!     Ok(())
//! }
//! ```
//!
//! [`WhosOnline::shutdown_signal`] completes on Ctrl-C or, on Unix, SIGTERM (what
//! Docker, systemd and Kubernetes send), so the same `main` stops cleanly wherever
//! it runs; it also ends the event streams, which a graceful shutdown waits for, and
//! [`WhosOnline::graceful`] bounds the wait for a client that stopped reading.
//!
//! The repository's `README.md` is the newcomer's page: the quick start, trying
//! it with curl, a login handler, the HTTP API, the main settings and the
//! supported versions. Its `docs/` folder holds one file per topic: how it works,
//! many instances, faults, identity, privacy, configuration, metrics, performance,
//! operations and the differences from the Django original.
//!
//! [axum]: https://docs.rs/axum

// One `unsafe` block in the crate, allowed where it stands: the cache prefetch
// hint in `dedupe.rs` (x86_64 only), which cannot fault.
#![deny(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs, clippy::all)]

#[cfg(feature = "axum-login")]
mod axum_login;
mod bots;
mod clock;
mod config;
mod counters;
mod dedupe;
mod error;
mod filters;
mod handle;
mod hash;
mod identity;
mod known;
mod layer;
mod metrics;
mod places;
mod presence;
mod privacy;
mod queue;
mod record;
mod refresher;
mod reporter;
mod routes;
#[cfg(feature = "tower-sessions")]
mod session;
mod signal;
mod sync;
mod ticker;
mod view;
mod who;
mod wiring;

#[cfg(feature = "axum-login")]
pub use axum_login::AuthSessionUser;
pub use bots::{BotFilter, DEFAULT_BOT_EXCEPTIONS, DEFAULT_BOT_PATTERNS};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    Builder, DEFAULT_CACHE_TTL, DEFAULT_FLUSH_INTERVAL, DEFAULT_IDENTIFY_TIMEOUT,
    DEFAULT_IPV6_PREFIX, DEFAULT_LIMIT, DEFAULT_MAX_IDENTIFYING, DEFAULT_MAX_LIMIT,
    DEFAULT_MAX_PENDING, DEFAULT_MAX_STREAMS, DEFAULT_PREFIX, DEFAULT_QUEUE_CAPACITY,
    DEFAULT_REFRESH, DEFAULT_RESOLUTION, DEFAULT_SHUTDOWN_GRACE, DEFAULT_TICK_INTERVAL,
    DEFAULT_VIEW_NAMES, DEFAULT_WINDOW, MAX_LIMIT,
};
pub use counters::CounterSnapshot;
// Unstable, for `benches/dedupe.rs` only: see the feature in Cargo.toml.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub use dedupe::BenchDedupe;
pub use error::{Error, Result};
pub use handle::WhosOnline;
pub use identity::{
    ClientIpSource, IdentifyFn, IdentifyNow, IdentifyUser, Identity, MAX_USER_NAME_LEN, NoUsers,
    ParseClientIpSourceError, SessionKey, User, UserFuture, identify_fn, identify_now,
};
pub use layer::{ResponseFuture, WhosOnlineLayer, WhosOnlineService};
pub use places::{
    DEFAULT_MAX_PLACES, MAX_PLACE_LEN, OTHER_PLACE, place_by_matched_path, place_by_path,
};
pub use presence::{
    Batch, Counts, DEFAULT_MAX_MEMBERS, DISTINCT_TTL_SECS, DaySecret, DaySecrets, Distinct,
    HiddenUsers, Marked, MemberKind, MemoryPresence, Online, PlaceCount, Placed, PresenceStore,
    RedisPresence, Snapshot, Tally, redis_cluster_pool, redis_pool,
};
pub use record::{
    DEFAULT_HISTORY_DAYS, Day, History, HistoryStore, MAX_HISTORY_READ, MIGRATIONS, MemoryRecord,
    PostgresRecord, Record, RecordCache, RecordReset, RecordStore, migrate,
};
#[cfg(feature = "openapi")]
pub use routes::openapi;
pub use routes::{
    DetailEntry, DetailResponse, ErrorBody, OnlineEvent, OnlineResponse, PlaceEntry,
    PlacesResponse, StatsResponse,
};
#[cfg(feature = "tower-sessions")]
pub use session::SessionUser;
pub use signal::shutdown_signal;
pub use ticker::TickReport;
pub use view::{View, Whereabouts, WhoIsWhere};
pub use who::BotName;

// Every ```rust block of the README compiles as a doctest (`cargo test`), so the
// README's snippets cannot drift from the API; `tests/readme.rs` checks that the
// crates they use are in the README's dependency list.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctests {}
