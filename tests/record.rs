//! The record store contract, run against Postgres and the in-memory store.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::Stack;
use whos_online::{MemoryRecord, PostgresRecord, Record, RecordStore};

const T: i64 = 1_764_000_000;

async fn store(stack: Stack) -> Arc<dyn RecordStore> {
    match stack {
        Stack::Real => Arc::new(PostgresRecord::new(common::migrated_database().await)),
        Stack::Memory => Arc::new(MemoryRecord::new()),
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

async fn empty_record_is_zero_and_null(stack: Stack) {
    let s = store(stack).await;
    let r = s.load().await.unwrap();
    assert_eq!(r, Record::default());
    assert_eq!(
        serde_json::to_value(r).unwrap(),
        serde_json::json!({"max_users": 0, "max_users_date": null,
                           "max_visitors": 0, "max_visitors_date": null})
    );
    // Raising with nobody online creates no dates.
    let r = s.raise(&Record::seen(0, 0, at(T))).await.unwrap();
    assert_eq!(r, Record::default());
    assert_eq!(s.load().await.unwrap(), Record::default());
}

async fn dates_change_only_when_counts_rise(stack: Stack) {
    let s = store(stack).await;
    let r = s.raise(&Record::seen(5, 2, at(T))).await.unwrap();
    assert_eq!((r.max_users, r.max_users_date), (5, Some(at(T))));
    assert_eq!((r.max_visitors, r.max_visitors_date), (2, Some(at(T))));

    // Equal: no change, the date stays the first time it was reached.
    let r = s.raise(&Record::seen(5, 2, at(T + 10))).await.unwrap();
    assert_eq!(r.max_users_date, Some(at(T)));
    assert_eq!(r.max_visitors_date, Some(at(T)));

    // Lower: never goes down.
    let r = s.raise(&Record::seen(3, 1, at(T + 20))).await.unwrap();
    assert_eq!((r.max_users, r.max_users_date), (5, Some(at(T))));

    // One rises, the other keeps its count and date.
    let r = s.raise(&Record::seen(4, 9, at(T + 30))).await.unwrap();
    assert_eq!((r.max_users, r.max_users_date), (5, Some(at(T))));
    assert_eq!((r.max_visitors, r.max_visitors_date), (9, Some(at(T + 30))));
    assert_eq!(s.load().await.unwrap(), r);
}

async fn dates_are_whole_seconds_utc(stack: Stack) {
    let s = store(stack).await;
    let precise = DateTime::parse_from_rfc3339("2026-11-26T19:29:24.987654+02:00")
        .unwrap()
        .with_timezone(&Utc);
    s.raise(&Record::seen(53, 0, precise)).await.unwrap();
    let json = serde_json::to_value(s.load().await.unwrap()).unwrap();
    assert_eq!(json["max_users"], 53);
    assert_eq!(json["max_users_date"], "2026-11-26T17:29:24Z");
    assert_eq!(json["max_visitors_date"], serde_json::Value::Null);
}

async fn concurrent_raises_end_at_the_true_maximum(stack: Stack) {
    let s = store(stack).await;
    // 64 raisers with distinct counts in a scrambled order, all at once.
    let counts: Vec<u64> = (0..64u64).map(|i| (i * 37) % 64 + 1).collect();
    let tasks: Vec<_> = counts
        .iter()
        .map(|&n| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.raise(&Record::seen(n, 65 - n, at(T + n as i64)))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seen_users = 0;
    for t in tasks {
        let r = t.await.unwrap();
        // Every answer is a record at least as high as what that raiser asked.
        seen_users = seen_users.max(r.max_users);
    }
    let r = s.load().await.unwrap();
    assert_eq!(seen_users, 64);
    assert_eq!((r.max_users, r.max_users_date), (64, Some(at(T + 64))));
    assert_eq!((r.max_visitors, r.max_visitors_date), (64, Some(at(T + 1))));
}

on_both_stacks!(
    empty_record_is_zero_and_null,
    dates_change_only_when_counts_rise,
    dates_are_whole_seconds_utc,
    concurrent_raises_end_at_the_true_maximum,
);

/// The crate's migrations and the host application's own `sqlx` migrations share
/// one database, in either order, run twice, and concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_coexist_with_the_host_apps_sqlx_migrations() {
    let pool = common::fresh_database().await;
    let dir = std::env::temp_dir().join(common::unique("host_migrations"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("20260101000000_host_things.sql"),
        "CREATE TABLE host_things (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL);",
    )
    .unwrap();

    // Host first, then ours (from four instances starting at once).
    sqlx::migrate::Migrator::new(dir.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { whos_online::migrate(&pool).await })
        })
        .collect();
    for s in starts {
        s.await.unwrap().unwrap();
    }

    // The host adds a migration later and runs its migrator again: it must not
    // trip over ours, and ours must not trip over it.
    std::fs::write(
        dir.join("20260102000000_host_more.sql"),
        "ALTER TABLE host_things ADD COLUMN extra TEXT;",
    )
    .unwrap();
    sqlx::migrate::Migrator::new(dir.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    whos_online::migrate(&pool).await.unwrap();

    let host: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    let ours: i64 = sqlx::query_scalar("SELECT count(*) FROM whos_online_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(host, 2);
    assert_eq!(ours, whos_online::MIGRATIONS.len() as i64);
    let r = PostgresRecord::new(pool.clone()).load().await.unwrap();
    assert_eq!(r, Record::default());
    std::fs::remove_dir_all(&dir).ok();
}

/// A Postgres that is down gives errors, not hangs or panics.
#[tokio::test]
async fn dead_postgres_errors() {
    let s = PostgresRecord::new(common::dead_postgres());
    assert!(s.load().await.is_err());
    assert!(s.raise(&Record::seen(1, 1, at(T))).await.is_err());
}
