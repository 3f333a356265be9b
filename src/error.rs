//! The crate's error type.

use std::sync::Arc;
use std::time::Duration;

/// Errors returned by the stores, the builder and the handle.
///
/// None of these ever reaches a request of the host application: the layer only
/// queues reports, and the background tasks log and count their failures.
///
/// # Why the backends' own error types
///
/// [`Redis`](Self::Redis), [`RedisPool`](Self::RedisPool) and
/// [`Postgres`](Self::Postgres) hold the backends' error types (`redis`,
/// `deadpool-redis`, `sqlx`) rather than strings. tower-sessions stringifies
/// backend errors so that its public API names no backend version; here the
/// versions are public anyway: [`Builder::redis`](crate::Builder::redis) takes a
/// `deadpool_redis::Pool`, [`Builder::postgres`](crate::Builder::postgres) and
/// [`migrate`](crate::migrate) a `sqlx::PgPool`, and
/// [`redis_pool`](crate::redis_pool) returns a pool. A major release of
/// `deadpool-redis` or `sqlx` is therefore a major release of this crate
/// whatever this enum holds, and strings would buy no semver room while losing
/// what typed errors give: matching on the cause (`RedisError::is_timeout`,
/// `sqlx::Error::PoolTimedOut`), the [`source`](std::error::Error::source)
/// chain, and `?` on a backend error in a store of your own (the `From` impls).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis command failed.
    #[error("redis: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    /// No Redis connection could be had from the pool.
    #[error("redis pool: {0}")]
    RedisPool(#[from] deadpool_redis::PoolError),
    /// The Redis pool could not be built (bad URL or settings).
    #[error("redis pool configuration: {0}")]
    RedisConfig(String),
    /// A Postgres query failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A store did not answer in time.
    #[error("{store} did not answer within {timeout:?}")]
    Timeout {
        /// Which store timed out.
        store: &'static str,
        /// The limit that was exceeded.
        timeout: Duration,
    },
    /// A value read from a store could not be understood.
    #[error("corrupt data in {store}: {detail}")]
    Corrupt {
        /// Which store held the value.
        store: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A reset of the record asked for a count above the stored record: a reset
    /// only lowers it (raising is the ticker's job). Nothing was changed.
    #[error(
        "cannot reset the record to {users} users and {visitors} visitors: above the \
         stored record of {max_users} users and {max_visitors} visitors (a reset only lowers it)"
    )]
    ResetAboveRecord {
        /// The users count asked for.
        users: u64,
        /// The visitors count asked for.
        visitors: u64,
        /// The stored most users.
        max_users: u64,
        /// The stored most visitors.
        max_visitors: u64,
    },
    /// An argument is out of its documented range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No daily history to answer with: none was read from its store yet (the
    /// first tick reads it, and every tick after), or none is kept (a record
    /// store of your own without a
    /// [`history_store`](crate::Builder::history_store)).
    #[error("no daily history has been read yet, or none is kept")]
    NoHistory,
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Presence reports could not be written: after a failed [`flush`], they
    /// wait and are retried at the next write; after [`shutdown`], they are lost.
    ///
    /// [`flush`]: crate::WhosOnline::flush
    /// [`shutdown`]: crate::WhosOnline::shutdown
    #[error("{members} member(s) not written to the presence store: {cause}")]
    Unwritten {
        /// Distinct members (users, visitors, bots) still waiting, or lost.
        members: usize,
        /// Why the last write failed.
        #[source]
        cause: Arc<Error>,
    },
    /// A background task ended abnormally (a panic in a store).
    #[error("background task failed: {0}")]
    Task(String),
    /// The background tasks have been shut down.
    #[error("whos-online has been shut down")]
    Shutdown,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
