//! The record store contract, run against Postgres and the in-memory store.

mod common;

use std::sync::Arc;

use axum_whos_online::{Error, MemoryRecord, PostgresRecord, Record, RecordStore};
use chrono::{DateTime, Utc};
use common::Stack;

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

/// A reset lowers the record: a count left as it is keeps its date, a lowered
/// one takes the reset's date (none at 0), and the generation goes up by one.
async fn reset_lowers_and_bumps_the_generation(stack: Stack) {
    let s = store(stack).await;
    s.raise(&Record::seen(49, 30, at(T))).await.unwrap();
    s.raise(&Record::seen(0, 31, at(T + 1))).await.unwrap();

    let r = s.reset(&Record::seen(5, 31, at(T + 100))).await.unwrap();
    assert_eq!((r.max_users, r.max_users_date), (5, Some(at(T + 100))));
    assert_eq!((r.max_visitors, r.max_visitors_date), (31, Some(at(T + 1))));
    assert_eq!(r.generation, 1);
    assert_eq!(s.load().await.unwrap(), r);

    let r = s.reset(&Record::seen(0, 2, at(T + 200))).await.unwrap();
    assert_eq!((r.max_users, r.max_users_date), (0, None));
    assert_eq!(
        (r.max_visitors, r.max_visitors_date),
        (2, Some(at(T + 200)))
    );
    assert_eq!(r.generation, 2);
    assert_eq!(s.load().await.unwrap(), r);
    // The generation is never served.
    assert!(serde_json::to_value(r).unwrap().get("generation").is_none());
}

/// Counts above the stored record are refused, and nothing changes.
async fn reset_above_the_record_is_refused(stack: Stack) {
    let s = store(stack).await;
    let before = s.raise(&Record::seen(10, 10, at(T))).await.unwrap();
    let err = s.reset(&Record::seen(11, 5, at(T + 1))).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ResetAboveRecord {
                users: 11,
                visitors: 5,
                max_users: 10,
                max_visitors: 10
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("only lowers"), "{err}");
    assert!(s.reset(&Record::seen(1, 11, at(T + 1))).await.is_err());
    assert_eq!(s.load().await.unwrap(), before);
    assert_eq!(before.generation, 0);

    // An empty store can be reset to nothing: the generation still moves.
    let empty = store(stack).await;
    let r = empty.reset(&Record::seen(0, 0, at(T))).await.unwrap();
    assert_eq!(
        r,
        Record {
            generation: 1,
            ..Record::default()
        }
    );
    assert!(empty.reset(&Record::seen(1, 0, at(T))).await.is_err());
}

/// A raise computed before a reset (of the older generation) cannot put the old
/// counts back; one of the new generation raises as usual.
async fn raises_from_before_a_reset_are_refused(stack: Stack) {
    let s = store(stack).await;
    s.raise(&Record::seen(49, 49, at(T))).await.unwrap();
    let reset = s.reset(&Record::seen(5, 5, at(T + 10))).await.unwrap();
    assert_eq!(reset.generation, 1);

    let stale = s.raise(&Record::seen(49, 49, at(T + 20))).await.unwrap();
    assert_eq!(stale, reset, "refused: the record is as the reset left it");

    let fresh = Record {
        generation: 1,
        ..Record::seen(20, 3, at(T + 30))
    };
    let r = s.raise(&fresh).await.unwrap();
    assert_eq!((r.max_users, r.max_users_date), (20, Some(at(T + 30))));
    assert_eq!((r.max_visitors, r.max_visitors_date), (5, Some(at(T + 10))));
    assert_eq!(r.generation, 1, "a raise never moves the generation");
    // A candidate from a later generation than the store's (the store was
    // emptied by hand) still raises; the generation stays the store's.
    let ahead = Record {
        generation: 7,
        ..Record::seen(21, 0, at(T + 40))
    };
    let r = s.raise(&ahead).await.unwrap();
    assert_eq!((r.max_users, r.generation), (21, 1));
}

/// Resets from many callers at once each bump the generation exactly once: the
/// check and the write are one atomic step.
async fn concurrent_resets_each_bump_the_generation(stack: Stack) {
    let s = store(stack).await;
    s.raise(&Record::seen(100, 100, at(T))).await.unwrap();
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.reset(&Record::seen(50, 50, at(T + i as i64))).await })
        })
        .collect();
    let mut generations = Vec::new();
    for t in tasks {
        generations.push(t.await.unwrap().unwrap().generation);
    }
    generations.sort_unstable();
    assert_eq!(generations, (1..=16).collect::<Vec<u64>>());
    assert_eq!(s.load().await.unwrap().generation, 16);
}

on_both_stacks!(
    empty_record_is_zero_and_null,
    dates_change_only_when_counts_rise,
    dates_are_whole_seconds_utc,
    concurrent_raises_end_at_the_true_maximum,
    reset_lowers_and_bumps_the_generation,
    reset_above_the_record_is_refused,
    raises_from_before_a_reset_are_refused,
    concurrent_resets_each_bump_the_generation,
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
            tokio::spawn(async move { axum_whos_online::migrate(&pool).await })
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
    axum_whos_online::migrate(&pool).await.unwrap();

    let host: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    let ours: i64 = sqlx::query_scalar("SELECT count(*) FROM whos_online_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(host, 2);
    assert_eq!(ours, axum_whos_online::MIGRATIONS.len() as i64);
    let r = PostgresRecord::new(pool.clone()).load().await.unwrap();
    assert_eq!(r, Record::default());
    std::fs::remove_dir_all(&dir).ok();
}

/// A database migrated before the generation column, holding a record: the
/// record is intact after `migrate()`, at generation 0, and raises and resets
/// work on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_an_existing_record_keeps_it_at_generation_0() {
    let pool = common::fresh_database().await;
    // What `migrate()` left behind when migration 1 was its only one.
    sqlx::query(
        "CREATE TABLE whos_online_migrations (
             version    BIGINT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (version, name, sql) = axum_whos_online::MIGRATIONS[0];
    assert_eq!(version, 1);
    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO whos_online_migrations (version, name) VALUES ($1, $2)")
        .bind(version)
        .bind(name)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO whos_online_record (id, max_users, max_users_date, max_visitors, max_visitors_date)
         VALUES (1, 53, $1, 120, NULL)",
    )
    .bind(at(T))
    .execute(&pool)
    .await
    .unwrap();
    // Before the migrations the new code cannot read the row (no per-site table yet).
    assert!(PostgresRecord::new(pool.clone()).load().await.is_err());

    axum_whos_online::migrate(&pool).await.unwrap();
    let s = PostgresRecord::new(pool.clone());
    let r = s.load().await.unwrap();
    assert_eq!(
        r,
        Record {
            max_users: 53,
            max_users_date: Some(at(T)),
            max_visitors: 120,
            max_visitors_date: None,
            generation: 0,
        }
    );
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM whos_online_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(applied, [1, 2, 3]);
    // Idempotent, and the record works as any other.
    axum_whos_online::migrate(&pool).await.unwrap();
    assert_eq!(
        s.raise(&Record::seen(54, 0, at(T + 1)))
            .await
            .unwrap()
            .max_users,
        54
    );
    assert_eq!(
        s.reset(&Record::seen(3, 120, at(T + 2)))
            .await
            .unwrap()
            .generation,
        1
    );
}

/// A Postgres that is down gives errors, not hangs or panics.
#[tokio::test]
async fn dead_postgres_errors() {
    let s = PostgresRecord::new(common::dead_postgres());
    assert!(s.load().await.is_err());
    assert!(s.raise(&Record::seen(1, 1, at(T))).await.is_err());
    assert!(s.reset(&Record::seen(0, 0, at(T))).await.is_err());
}
