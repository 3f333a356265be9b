use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

use super::{Day, HistoryStore, Record, RecordStore, merge_day};
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
    (
        3,
        "whos_online_sites_and_days",
        include_str!("../../migrations/0003_whos_online_sites_and_days.sql"),
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

/// The record and the daily history of one site in Postgres: tables
/// `whos_online_site_record` (one row per site) and `whos_online_day` (one row
/// per site and UTC day). Run [`migrate`] once before use.
///
/// The site is the installation's [`prefix`](crate::Builder::prefix): the
/// builder's [`postgres`](crate::Builder::postgres) names it, so two
/// installations with different prefixes share a database but not a record.
/// A site without a record of its own starts from the one record of earlier
/// versions (which all sites shared), when there is one: see
/// [`RecordStore::prepare`].
#[derive(Debug, Clone)]
pub struct PostgresRecord {
    pool: PgPool,
    timeout: Duration,
    site: Arc<str>,
    /// Whether this process has offered to adopt the record of before.
    adopted: Arc<AtomicBool>,
}

impl PostgresRecord {
    /// A store over `pool` for the site [`DEFAULT_PREFIX`](crate::DEFAULT_PREFIX);
    /// each query is given up after 2 seconds.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            timeout: Duration::from_secs(2),
            site: Arc::from(super::DEFAULT_SITE),
            adopted: Arc::default(),
        }
    }

    /// Sets how long one query may take before it is abandoned.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keeps the record and the history of the site `site` (the builder sets it
    /// to its [`prefix`](crate::Builder::prefix)).
    pub fn with_site(mut self, site: &str) -> Self {
        self.site = Arc::from(site);
        self
    }

    /// The site whose record and history this store keeps.
    pub fn site(&self) -> &str {
        &self.site
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

    /// Once per process, before the first use of the record: when this site
    /// has no record yet, it starts from the record of before the per-site
    /// tables (kept under the empty site name by migration 3), which every site
    /// of the database shared and showed until then. One statement; a site
    /// with a record of its own is left as it is.
    async fn adopt_legacy(&self) -> Result<()> {
        if self.adopted.load(Ordering::Relaxed) {
            return Ok(());
        }
        let adopted = self
            .timed(
                sqlx::query(&format!(
                    "INSERT INTO whos_online_site_record (site, {COLUMNS})
                     SELECT $1, {COLUMNS} FROM whos_online_site_record WHERE site = ''
                     ON CONFLICT (site) DO NOTHING"
                ))
                .bind(&*self.site)
                .execute(&self.pool),
            )
            .await?;
        if adopted.rows_affected() > 0 {
            tracing::info!(site = %self.site, "whos-online: this site starts from the record kept before per-site records");
        }
        self.adopted.store(true, Ordering::Relaxed);
        Ok(())
    }
}

type Row = (i64, Option<DateTime<Utc>>, i64, Option<DateTime<Utc>>, i64);

/// The columns of a [`Row`], in order.
const COLUMNS: &str = "max_users, max_users_date, max_visitors, max_visitors_date, generation";

fn count(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::Corrupt {
        store: "postgres",
        detail: format!("negative number {v}"),
    })
}

fn from_row(row: Row) -> Result<Record> {
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
        self.adopt_legacy().await?;
        let row: Option<Row> = self
            .timed(
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM whos_online_site_record WHERE site = $1"
                ))
                .bind(&*self.site)
                .fetch_optional(&self.pool),
            )
            .await?;
        row.map_or(Ok(Record::default()), from_row)
    }

    async fn raise(&self, c: &Record) -> Result<Record> {
        self.adopt_legacy().await?;
        // One statement, so concurrent raisers (and a reset) serialise on the row
        // lock: each count only ever moves up, and its date moves only when it
        // does. The SET expressions all read the row as it was before this update.
        // A candidate of an older generation than the row's raises nothing.
        let row: Row = self
            .timed(
                sqlx::query_as(&format!(
                    "INSERT INTO whos_online_site_record AS r
                         (site, max_users, max_users_date, max_visitors, max_visitors_date)
                     VALUES ($6, $1, $2, $3, $4)
                     ON CONFLICT (site) DO UPDATE SET
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
                .bind(&*self.site)
                .fetch_one(&self.pool),
            )
            .await?;
        from_row(row)
    }

    /// Starts this site from the record of earlier versions, if it has none
    /// of its own (see the type's docs).
    async fn prepare(&self) -> Result<()> {
        self.adopt_legacy().await
    }

    async fn reset(&self, to: &Record) -> Result<Record> {
        self.adopt_legacy().await?;
        // One transaction holding the row lock from the read to the write, so the
        // check against the stored record and the bump of the generation are one
        // step for every concurrent raiser or resetter.
        let work = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO whos_online_site_record (site) VALUES ($1)
                 ON CONFLICT (site) DO NOTHING",
            )
            .bind(&*self.site)
            .execute(&mut *tx)
            .await?;
            let row: Row = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM whos_online_site_record WHERE site = $1 FOR UPDATE"
            ))
            .bind(&*self.site)
            .fetch_one(&mut *tx)
            .await?;
            let new = match from_row(row).and_then(|current| current.reset_to(to)) {
                Ok(new) => new,
                // Dropping the transaction rolls it back.
                Err(e) => return Ok(Err(e)),
            };
            sqlx::query(
                "UPDATE whos_online_site_record SET max_users = $1, max_users_date = $2,
                     max_visitors = $3, max_visitors_date = $4, generation = $5
                 WHERE site = $6",
            )
            .bind(to_i64(new.max_users))
            .bind(new.max_users_date)
            .bind(to_i64(new.max_visitors))
            .bind(new.max_visitors_date)
            .bind(to_i64(new.generation))
            .bind(&*self.site)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Ok(new))
        };
        self.timed(work).await?
    }
}

/// A row of `whos_online_day`, in [`DAY_COLUMNS`] order.
type DayRow = (
    NaiveDate,
    i64,
    Option<DateTime<Utc>>,
    i64,
    Option<DateTime<Utc>>,
    i64,
    Option<DateTime<Utc>>,
    i64,
    i64,
);

const DAY_COLUMNS: &str = "day, max_users, max_users_at, max_visitors, max_visitors_at, \
                           max_bots, max_bots_at, distinct_users, distinct_visitors";

fn from_day_row(r: DayRow) -> Result<Day> {
    Ok(Day {
        day: r.0,
        max_users: count(r.1)?,
        max_users_at: r.2,
        max_visitors: count(r.3)?,
        max_visitors_at: r.4,
        max_bots: count(r.5)?,
        max_bots_at: r.6,
        distinct_users: count(r.7)?,
        distinct_visitors: count(r.8)?,
    })
}

#[async_trait]
impl HistoryStore for PostgresRecord {
    async fn raise_days(
        &self,
        seen: &[Day],
        keep_from: Option<NaiveDate>,
        from: NaiveDate,
    ) -> Result<Vec<Day>> {
        // A day about to be deleted is not raised: one statement must not both
        // update and delete a row (nor update one twice: a day given twice is
        // merged first).
        let mut merged: Vec<Day> = Vec::with_capacity(seen.len());
        for d in seen.iter().filter(|d| keep_from.is_none_or(|k| d.day >= k)) {
            merge_day(&mut merged, d);
        }
        let seen: Vec<&Day> = merged.iter().collect();
        let col = |f: fn(&Day) -> u64| seen.iter().map(|d| to_i64(f(d))).collect::<Vec<i64>>();
        let at = |f: fn(&Day) -> Option<DateTime<Utc>>| {
            seen.iter()
                .map(|d| f(d))
                .collect::<Vec<Option<DateTime<Utc>>>>()
        };
        // One statement: the raise-only upsert of each seen day (the SET
        // expressions read the row as it was), the retention delete, and the
        // read of the range. The final SELECT sees the table as it was before
        // the statement, so raised days are taken from the upsert's RETURNING.
        let sql = format!(
            "WITH seen AS (
                 SELECT * FROM unnest($2::date[], $3::bigint[], $4::timestamptz[],
                     $5::bigint[], $6::timestamptz[], $7::bigint[], $8::timestamptz[],
                     $9::bigint[], $10::bigint[])
                 AS t({DAY_COLUMNS})
             ),
             raised AS (
                 INSERT INTO whos_online_day AS d (site, {DAY_COLUMNS})
                 SELECT $1, {DAY_COLUMNS} FROM seen
                 ON CONFLICT (site, day) DO UPDATE SET
                     max_users = GREATEST(d.max_users, EXCLUDED.max_users),
                     max_users_at = CASE WHEN EXCLUDED.max_users > d.max_users
                         THEN EXCLUDED.max_users_at ELSE d.max_users_at END,
                     max_visitors = GREATEST(d.max_visitors, EXCLUDED.max_visitors),
                     max_visitors_at = CASE WHEN EXCLUDED.max_visitors > d.max_visitors
                         THEN EXCLUDED.max_visitors_at ELSE d.max_visitors_at END,
                     max_bots = GREATEST(d.max_bots, EXCLUDED.max_bots),
                     max_bots_at = CASE WHEN EXCLUDED.max_bots > d.max_bots
                         THEN EXCLUDED.max_bots_at ELSE d.max_bots_at END,
                     distinct_users = GREATEST(d.distinct_users, EXCLUDED.distinct_users),
                     distinct_visitors = GREATEST(d.distinct_visitors, EXCLUDED.distinct_visitors)
                 RETURNING {DAY_COLUMNS}
             ),
             gone AS (
                 DELETE FROM whos_online_day
                 WHERE site = $1 AND $11::date IS NOT NULL AND day < $11::date
             )
             SELECT {DAY_COLUMNS} FROM raised WHERE day >= $12
             UNION ALL
             SELECT {DAY_COLUMNS} FROM whos_online_day
             WHERE site = $1 AND day >= $12
                 AND ($11::date IS NULL OR day >= $11::date)
                 AND day NOT IN (SELECT day FROM raised)
             ORDER BY day"
        );
        let rows: Vec<DayRow> = self
            .timed(
                sqlx::query_as(&sql)
                    .bind(&*self.site)
                    .bind(seen.iter().map(|d| d.day).collect::<Vec<NaiveDate>>())
                    .bind(col(|d| d.max_users))
                    .bind(at(|d| d.max_users_at))
                    .bind(col(|d| d.max_visitors))
                    .bind(at(|d| d.max_visitors_at))
                    .bind(col(|d| d.max_bots))
                    .bind(at(|d| d.max_bots_at))
                    .bind(col(|d| d.distinct_users))
                    .bind(col(|d| d.distinct_visitors))
                    .bind(keep_from)
                    .bind(from)
                    .fetch_all(&self.pool),
            )
            .await?;
        rows.into_iter().map(from_day_row).collect()
    }
}
