use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{Record, RecordStore};
use crate::{Error, Result};

/// The crate's migrations, in order: `(version, name, sql)`. Applied by [`migrate`];
/// listed so that an application that prefers its own tooling can copy them.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "whos_online_record",
        include_str!("../../migrations/0001_whos_online_record.sql"),
    ),
    (
        2,
        "whos_online_record_generation",
        include_str!("../../migrations/0002_whos_online_record_generation.sql"),
    ),
];

/// Applies the crate's [`MIGRATIONS`] that are not applied yet.
///
/// Bookkeeping lives in the crate's own table `whos_online_migrations`, not in
/// sqlx's `_sqlx_migrations`, so the host application's `sqlx::migrate!()` and this
/// function never see each other's versions and can run in either order against the
/// same database. Safe to call from many instances at once (an advisory lock
/// serialises them) and on every start.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    // An arbitrary constant that names this crate's migration lock.
    const LOCK_KEY: i64 = 0x7768_6f73_6f6e_6c69;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS whos_online_migrations (
             version    BIGINT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await?;
    for &(version, name, sql) in MIGRATIONS {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM whos_online_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if applied.is_some() {
            continue;
        }
        // Simple-query protocol: a migration may hold several statements. (Not
        // `raw_sql`, whose bounds would make this future unfit for `spawn`.)
        sqlx::Executor::execute(&mut *tx, sql).await?;
        sqlx::query("INSERT INTO whos_online_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, name, "whos-online migration applied");
    }
    tx.commit().await?;
    Ok(())
}

/// The record in Postgres, table `whos_online_record` (one row). Run [`migrate`]
/// once before use.
#[derive(Debug, Clone)]
pub struct PostgresRecord {
    pool: PgPool,
    timeout: Duration,
}

impl PostgresRecord {
    /// A store over `pool`; each query is given up after 2 seconds.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            timeout: Duration::from_secs(2),
        }
    }

    /// Sets how long one query may take before it is abandoned.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn timed<T>(&self, fut: impl Future<Output = sqlx::Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(Error::Timeout {
                store: "postgres",
                timeout: self.timeout,
            }),
        }
    }
}

type Row = (i64, Option<DateTime<Utc>>, i64, Option<DateTime<Utc>>, i64);

/// The columns of a [`Row`], in order.
const COLUMNS: &str = "max_users, max_users_date, max_visitors, max_visitors_date, generation";

fn from_row(row: Row) -> Result<Record> {
    let count = |v: i64| {
        u64::try_from(v).map_err(|_| Error::Corrupt {
            store: "postgres",
            detail: format!("negative number {v}"),
        })
    };
    Ok(Record {
        max_users: count(row.0)?,
        max_users_date: row.1,
        max_visitors: count(row.2)?,
        max_visitors_date: row.3,
        generation: count(row.4)?,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl RecordStore for PostgresRecord {
    async fn load(&self) -> Result<Record> {
        let row: Option<Row> = self
            .timed(
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM whos_online_record WHERE id = 1"
                ))
                .fetch_optional(&self.pool),
            )
            .await?;
        row.map_or(Ok(Record::default()), from_row)
    }

    async fn raise(&self, c: &Record) -> Result<Record> {
        // One statement, so concurrent raisers (and a reset) serialise on the row
        // lock: each count only ever moves up, and its date moves only when it
        // does. The SET expressions all read the row as it was before this update.
        // A candidate of an older generation than the row's raises nothing.
        let row: Row = self
            .timed(
                sqlx::query_as(&format!(
                    "INSERT INTO whos_online_record AS r
                         (id, max_users, max_users_date, max_visitors, max_visitors_date)
                     VALUES (1, $1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET
                         max_users = CASE WHEN $5 >= r.generation
                             THEN GREATEST(r.max_users, EXCLUDED.max_users) ELSE r.max_users END,
                         max_users_date = CASE WHEN $5 >= r.generation
                             AND EXCLUDED.max_users > r.max_users
                             THEN EXCLUDED.max_users_date ELSE r.max_users_date END,
                         max_visitors = CASE WHEN $5 >= r.generation
                             THEN GREATEST(r.max_visitors, EXCLUDED.max_visitors)
                             ELSE r.max_visitors END,
                         max_visitors_date = CASE WHEN $5 >= r.generation
                             AND EXCLUDED.max_visitors > r.max_visitors
                             THEN EXCLUDED.max_visitors_date ELSE r.max_visitors_date END
                     RETURNING {COLUMNS}"
                ))
                .bind(to_i64(c.max_users))
                .bind(c.max_users_date)
                .bind(to_i64(c.max_visitors))
                .bind(c.max_visitors_date)
                .bind(to_i64(c.generation))
                .fetch_one(&self.pool),
            )
            .await?;
        from_row(row)
    }

    async fn reset(&self, to: &Record) -> Result<Record> {
        // One transaction holding the row lock from the read to the write, so the
        // check against the stored record and the bump of the generation are one
        // step for every concurrent raiser or resetter.
        let work = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO whos_online_record (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
            )
            .execute(&mut *tx)
            .await?;
            let row: Row = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM whos_online_record WHERE id = 1 FOR UPDATE"
            ))
            .fetch_one(&mut *tx)
            .await?;
            let new = match from_row(row).and_then(|current| current.reset_to(to)) {
                Ok(new) => new,
                // Dropping the transaction rolls it back.
                Err(e) => return Ok(Err(e)),
            };
            sqlx::query(
                "UPDATE whos_online_record SET max_users = $1, max_users_date = $2,
                     max_visitors = $3, max_visitors_date = $4, generation = $5
                 WHERE id = 1",
            )
            .bind(to_i64(new.max_users))
            .bind(new.max_users_date)
            .bind(to_i64(new.max_visitors))
            .bind(new.max_visitors_date)
            .bind(to_i64(new.generation))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Ok(new))
        };
        self.timed(work).await?
    }
}
