//! The presence store contract, run against Redis and the in-memory store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum_whos_online::{
    Batch, DaySecret, DaySecrets, MemoryPresence, PresenceStore, Record, RecordCache, RedisPresence,
};
use chrono::DateTime;
use common::Stack;

const T: i64 = 1_764_000_000;

/// Both built-in stores play three roles: presence, day secrets, record cache.
trait Roles: PresenceStore + DaySecrets + RecordCache {}
impl<S: PresenceStore + DaySecrets + RecordCache> Roles for S {}

fn store(stack: Stack) -> Arc<dyn Roles> {
    match stack {
        Stack::Real => {
            Arc::new(RedisPresence::from_url(&common::redis_url(), &common::prefix()).unwrap())
        }
        Stack::Memory => Arc::new(MemoryPresence::new()),
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn batch(users: &[&str], visitors: &[&str]) -> Batch {
    Batch {
        users: names(users),
        visitors: names(visitors),
        ..Batch::default()
    }
}

fn date(secs: i64) -> Option<DateTime<chrono::Utc>> {
    DateTime::from_timestamp(secs, 0)
}

async fn window_edges(stack: Stack) {
    let p = store(stack);
    p.mark_seen(T, &batch(&["inside"], &["10.0.0.1"]))
        .await
        .unwrap();
    p.mark_seen(T - 1, &batch(&["outside"], &["10.0.0.2"]))
        .await
        .unwrap();

    // Seen exactly at the cutoff counts; one second before does not, pruned or not.
    let online = p.snapshot(T, 10).await.unwrap().online(usize::MAX);
    assert_eq!(online.users, ["inside"]);
    assert_eq!((online.user_count, online.visitor_count), (1, 1));

    // Not pruned yet: a wider window still sees both.
    let wide = p.snapshot(T - 1, 10).await.unwrap().online(usize::MAX);
    assert_eq!(wide.users, ["inside", "outside"]);

    let counts = p.prune_and_count(T).await.unwrap();
    assert_eq!((counts.users, counts.visitors), (1, 1));
    let after = p.snapshot(T - 1, 10).await.unwrap().online(usize::MAX);
    assert_eq!(after.users, ["inside"]);
    assert_eq!(after.visitor_count, 1);
}

async fn last_seen_never_moves_back(stack: Stack) {
    let p = store(stack);
    p.mark_seen(T + 100, &batch(&["alice"], &["10.0.0.1"]))
        .await
        .unwrap();
    // A late batch with an older time must not age the member.
    p.mark_seen(T, &batch(&["alice"], &["10.0.0.1"]))
        .await
        .unwrap();
    let online = p.snapshot(T + 50, 10).await.unwrap().online(usize::MAX);
    assert_eq!(online.users, ["alice"]);
    assert_eq!(online.visitor_count, 1);
    // And a newer one moves it forward.
    p.mark_seen(T + 200, &batch(&["alice"], &[])).await.unwrap();
    assert_eq!(
        p.snapshot(T + 150, 10)
            .await
            .unwrap()
            .online(usize::MAX)
            .users,
        ["alice"]
    );
}

async fn limit_keeps_the_most_recent_sorted_by_name(stack: Stack) {
    let p = store(stack);
    for (i, n) in ["carol", "alice", "dave", "bob"].iter().enumerate() {
        p.mark_seen(T + i as i64, &batch(&[n], &[])).await.unwrap();
    }
    let online = p.snapshot(T, 2).await.unwrap().online(usize::MAX);
    // The two seen last are dave (T+2) and bob (T+3).
    assert_eq!(online.users, ["bob", "dave"]);
    assert_eq!(online.user_count, 4, "counts are never limited");
    assert_eq!(
        p.snapshot(T, 10).await.unwrap().online(usize::MAX).users,
        ["alice", "bob", "carol", "dave"]
    );
}

async fn duplicates_count_once_and_kinds_stay_apart(stack: Stack) {
    let p = store(stack);
    p.mark_seen(T, &batch(&["alice", "bob"], &["alice", "10.0.0.1"]))
        .await
        .unwrap();
    p.mark_seen(T, &batch(&["alice"], &["10.0.0.1"]))
        .await
        .unwrap();
    let online = p.snapshot(T, 10).await.unwrap().online(usize::MAX);
    assert_eq!(online.users, ["alice", "bob"]);
    assert_eq!((online.user_count, online.visitor_count), (2, 2));
    // Empty batches are fine.
    p.mark_seen(T, &Batch::default()).await.unwrap();
}

async fn hidden_users_count_but_are_not_listed(stack: Stack) {
    let p = store(stack);
    let b = Batch {
        users: names(&["alice"]),
        hidden_users: names(&["ghost"]),
        ..Batch::default()
    };
    p.mark_seen(T, &b).await.unwrap();
    let online = p.snapshot(T, 10).await.unwrap().online(usize::MAX);
    assert_eq!(online.users, ["alice"]);
    assert_eq!(online.user_count, 2);
    assert_eq!(p.prune_and_count(T).await.unwrap().users, 2);

    // alice hides, ghost shows: each is in one set only, never counted twice.
    let b = Batch {
        users: names(&["ghost"]),
        hidden_users: names(&["alice"]),
        ..Batch::default()
    };
    p.mark_seen(T + 1, &b).await.unwrap();
    let online = p.snapshot(T, 10).await.unwrap().online(usize::MAX);
    assert_eq!(online.users, ["ghost"]);
    assert_eq!(online.user_count, 2);
}

async fn bots_are_counted_apart(stack: Stack) {
    let p = store(stack);
    let b = Batch {
        visitors: names(&["10.0.0.1"]),
        bots: names(&["66.249.66.1", "66.249.66.2"]),
        ..Batch::default()
    };
    p.mark_seen(T, &b).await.unwrap();
    let online = p.snapshot(T, 10).await.unwrap().online(usize::MAX);
    assert_eq!((online.visitor_count, online.bot_count), (1, 2));
    let counts = p.prune_and_count(T + 1).await.unwrap();
    assert_eq!((counts.visitors, counts.bots), (0, 0));
}

/// Retired members leave their own kind's set only.
async fn retired_members_are_removed(stack: Stack) {
    let p = store(stack);
    let first = Batch {
        visitors: names(&["old-a", "old-b"]),
        bots: names(&["bot-old", "bot-kept"]),
        ..Batch::default()
    };
    p.mark_seen(T, &first).await.unwrap();
    let next = Batch {
        visitors: names(&["new-a"]),
        bots: names(&["bot-new"]),
        retired_visitors: names(&["old-a", "bot-kept"]),
        retired_bots: names(&["bot-old", "old-b"]),
        ..Batch::default()
    };
    p.mark_seen(T + 1, &next).await.unwrap();
    let online = p.snapshot(T, 10).await.unwrap().online(usize::MAX);
    // Visitors old-b and new-a; bots bot-kept and bot-new.
    assert_eq!((online.visitor_count, online.bot_count), (2, 2));
    let counts = p.prune_and_count(T + 1).await.unwrap();
    assert_eq!((counts.visitors, counts.bots), (1, 1));
}

fn keyed(visitors: &[&str], expected: &str, candidate: &str) -> Batch {
    Batch {
        users: names(&["u"]),
        visitors: names(visitors),
        keyed_by: Some(DaySecret {
            day: "2026-11-26".into(),
            expected: expected.into(),
            candidate: candidate.into(),
            day_start: T - 3600,
        }),
        ..Batch::default()
    }
}

/// The first secret claimed for a day is the one every writer gets back, and
/// keyed members are written only under it (users always are).
async fn day_secret_first_claim_wins(stack: Stack) {
    let p = store(stack);
    assert_eq!(p.day_secret("2026-11-26").await.unwrap(), None);
    let first = p.mark_seen(T, &keyed(&["v1"], "s1", "s1")).await.unwrap();
    assert!(!first.keyed_wrong);
    assert_eq!(first.day_secret.as_deref(), Some("s1"));
    assert_eq!(first.stale_removed, 0);

    let other = p.mark_seen(T, &keyed(&["v2"], "s2", "s2")).await.unwrap();
    assert!(other.keyed_wrong, "a second secret for the day is refused");
    assert_eq!(other.day_secret.as_deref(), Some("s1"));
    let online = p.snapshot(T, 10).await.unwrap().online(usize::MAX);
    assert_eq!((online.user_count, online.visitor_count), (1, 1));

    // Derived again from the held secret: written.
    let again = p.mark_seen(T, &keyed(&["v2"], "s1", "s9")).await.unwrap();
    assert!(!again.keyed_wrong);
    assert_eq!(
        p.snapshot(T, 10)
            .await
            .unwrap()
            .online(usize::MAX)
            .visitor_count,
        2
    );
    assert_eq!(
        p.day_secret("2026-11-26").await.unwrap().as_deref(),
        Some("s1")
    );
    assert_eq!(p.day_secret("2026-11-27").await.unwrap(), None);
}

/// Redis loses the day's secret alone (evicted or deleted) while its members
/// stay: the next writer's candidate becomes the secret, and the day's members
/// keyed by the lost one are removed, never counted beside their new ones.
/// Members seen before the day's start (yesterday's) stay.
#[tokio::test]
async fn a_lost_day_secret_takes_its_members_along() {
    let prefix = common::prefix();
    let p = RedisPresence::from_url(&common::redis_url(), &prefix).unwrap();
    let yesterday = Batch {
        visitors: names(&["old"]),
        ..Batch::default()
    };
    p.mark_seen(T - 7200, &yesterday).await.unwrap();
    p.mark_seen(T, &keyed(&["v1", "v2"], "s1", "s1"))
        .await
        .unwrap();
    assert_eq!(
        p.snapshot(0, 10)
            .await
            .unwrap()
            .online(usize::MAX)
            .visitor_count,
        3
    );

    let pool = axum_whos_online::redis_pool(&common::redis_url()).unwrap();
    let mut conn = pool.get().await.unwrap();
    let key = format!("{{{prefix}}}:visitor-key:2026-11-26");
    let _: () = deadpool_redis::redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();

    // A writer still holding s1 proposes s3: s3 is stored, v1 and v2 go.
    let m = p
        .mark_seen(T + 1, &keyed(&["v1"], "s1", "s3"))
        .await
        .unwrap();
    assert!(m.keyed_wrong);
    assert_eq!(m.day_secret.as_deref(), Some("s3"));
    assert_eq!(m.stale_removed, 2);
    assert_eq!(
        p.snapshot(0, 10)
            .await
            .unwrap()
            .online(usize::MAX)
            .visitor_count,
        1
    );
    let m = p
        .mark_seen(T + 1, &keyed(&["v1*"], "s3", "s4"))
        .await
        .unwrap();
    assert!(!m.keyed_wrong);
    assert_eq!(
        p.snapshot(0, 10)
            .await
            .unwrap()
            .online(usize::MAX)
            .visitor_count,
        2
    );
}

/// The cap trims the least recently seen and says how many.
async fn the_cap_reports_what_it_trims(stack: Stack) {
    let p: Arc<dyn PresenceStore> = match stack {
        Stack::Real => Arc::new(
            RedisPresence::from_url(&common::redis_url(), &common::prefix())
                .unwrap()
                .with_max_members(2),
        ),
        Stack::Memory => Arc::new(MemoryPresence::new().with_max_members(2)),
    };
    let m = p
        .mark_seen(T, &batch(&["a", "b"], &["1", "2"]))
        .await
        .unwrap();
    assert_eq!(m.trimmed, 0);
    let m = p
        .mark_seen(T + 1, &batch(&["c"], &["3", "4", "5"]))
        .await
        .unwrap();
    assert_eq!(m.trimmed, 1 + 3);
    let online = p.snapshot(T, 10).await.unwrap().online(usize::MAX);
    assert_eq!(online.users, ["b", "c"]);
    assert_eq!((online.user_count, online.visitor_count), (2, 2));
}

async fn empty_store_counts_zero(stack: Stack) {
    let p = store(stack);
    let online = p.snapshot(T, 10).await.unwrap().online(usize::MAX);
    assert!(online.users.is_empty());
    assert_eq!((online.user_count, online.visitor_count), (0, 0));
    let counts = p.prune_and_count(T).await.unwrap();
    assert_eq!((counts.users, counts.visitors), (0, 0));
    assert_eq!(p.cached_record().await.unwrap(), None);
}

async fn record_cache_only_rises(stack: Stack) {
    let p = store(stack);
    let hour = Duration::from_secs(3600);
    let first = Record {
        max_users: 50,
        max_users_date: date(T),
        max_visitors: 100,
        max_visitors_date: date(T + 1),
        generation: 0,
    };
    p.cache_record(&first, hour).await.unwrap();
    assert_eq!(p.cached_record().await.unwrap(), Some(first));

    // A slower writer with a lower user count cannot lower it; its higher visitor
    // count goes in with its own date.
    let second = Record {
        max_users: 40,
        max_users_date: date(T + 2),
        max_visitors: 120,
        max_visitors_date: date(T + 3),
        generation: 0,
    };
    p.cache_record(&second, hour).await.unwrap();
    let merged = p.cached_record().await.unwrap().unwrap();
    assert_eq!(merged.max_users, 50);
    assert_eq!(merged.max_users_date, date(T));
    assert_eq!(merged.max_visitors, 120);
    assert_eq!(merged.max_visitors_date, date(T + 3));

    // Numbers compare as numbers: 9 < 50 even though "9" > "50".
    let nine = Record {
        max_users: 9,
        ..Record::default()
    };
    p.cache_record(&nine, hour).await.unwrap();
    assert_eq!(p.cached_record().await.unwrap().unwrap().max_users, 50);
}

/// A record of a higher generation (a reset) replaces the cache, one of the same
/// generation raises it, one of a lower generation (read before the reset) is
/// ignored.
async fn record_cache_follows_generations(stack: Stack) {
    let p = store(stack);
    let hour = Duration::from_secs(3600);
    let old = Record::seen(49, 120, date(T).unwrap());
    p.cache_record(&old, hour).await.unwrap();

    let reset = Record {
        generation: 1,
        ..Record::seen(5, 6, date(T + 10).unwrap())
    };
    p.cache_record(&reset, hour).await.unwrap();
    assert_eq!(p.cached_record().await.unwrap(), Some(reset), "replaced");

    // A slow instance refills the cache with what it read before the reset.
    p.cache_record(&Record::seen(60, 200, date(T + 20).unwrap()), hour)
        .await
        .unwrap();
    assert_eq!(p.cached_record().await.unwrap(), Some(reset), "ignored");

    let raise = Record {
        generation: 1,
        ..Record::seen(7, 3, date(T + 30).unwrap())
    };
    p.cache_record(&raise, hour).await.unwrap();
    let merged = p.cached_record().await.unwrap().unwrap();
    assert_eq!((merged.max_users, merged.max_users_date), (7, date(T + 30)));
    assert_eq!(
        (merged.max_visitors, merged.max_visitors_date),
        (6, date(T + 10))
    );
    assert_eq!(merged.generation, 1);
}

async fn record_cache_keeps_empty_dates(stack: Stack) {
    let p = store(stack);
    p.cache_record(&Record::default(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(p.cached_record().await.unwrap(), Some(Record::default()));
}

async fn record_cache_expires(stack: Stack) {
    let p = store(stack);
    let r = Record::seen(3, 4, chrono::Utc::now());
    p.cache_record(&r, Duration::from_millis(20)).await.unwrap();
    // Expiry is the behaviour under test, so real time has to pass here.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(p.cached_record().await.unwrap(), None);
}

/// A write far larger than one command's part lands whole, at its one time, and
/// still never moves a later time back.
async fn a_large_write_lands_whole(stack: Stack) {
    let p = store(stack);
    let many: Vec<String> = (0..2_500).map(|i| format!("visitor-{i:05}")).collect();
    let users: Vec<String> = (0..1_001).map(|i| format!("user-{i:05}")).collect();
    p.mark_seen(T + 5, &batch(&["user-00000"], &["visitor-02499"]))
        .await
        .unwrap();
    let big = Batch {
        users: users.clone(),
        visitors: many,
        ..Batch::default()
    };
    p.mark_seen(T, &big).await.unwrap();
    let online = p.snapshot(T, 2_000).await.unwrap().online(usize::MAX);
    assert_eq!((online.user_count, online.visitor_count), (1_001, 2_500));
    assert_eq!(online.users, users);
    // Only the two marked later are still online at T + 1.
    let later = p.snapshot(T + 1, 10).await.unwrap().online(usize::MAX);
    assert_eq!((later.user_count, later.visitor_count), (1, 1));
}

on_both_stacks!(
    a_large_write_lands_whole,
    retired_members_are_removed,
    window_edges,
    last_seen_never_moves_back,
    limit_keeps_the_most_recent_sorted_by_name,
    duplicates_count_once_and_kinds_stay_apart,
    hidden_users_count_but_are_not_listed,
    bots_are_counted_apart,
    day_secret_first_claim_wins,
    the_cap_reports_what_it_trims,
    empty_store_counts_zero,
    record_cache_only_rises,
    record_cache_keeps_empty_dates,
    record_cache_expires,
    record_cache_follows_generations,
);

/// A cache hash written before there were generations reads as generation 0:
/// merged with as before, replaced by a reset.
#[tokio::test]
async fn a_cache_hash_without_a_generation_is_generation_0() {
    let pool = axum_whos_online::redis_pool(&common::redis_url()).unwrap();
    let p = RedisPresence::new(pool.clone(), &common::prefix());
    let mut conn = pool.get().await.unwrap();
    let () = deadpool_redis::redis::cmd("HSET")
        .arg(p.record_key())
        .arg(&["max_users", "53", "max_users_date", &T.to_string()])
        .arg(&["max_visitors", "120", "max_visitors_date", ""])
        .query_async(&mut conn)
        .await
        .unwrap();
    let cached = p.cached_record().await.unwrap().unwrap();
    assert_eq!((cached.max_users, cached.generation), (53, 0));

    let hour = Duration::from_secs(3600);
    p.cache_record(&Record::seen(54, 1, date(T + 1).unwrap()), hour)
        .await
        .unwrap();
    let cached = p.cached_record().await.unwrap().unwrap();
    assert_eq!((cached.max_users, cached.max_visitors), (54, 120));
    let reset = Record {
        generation: 1,
        ..Record::seen(2, 3, date(T + 2).unwrap())
    };
    p.cache_record(&reset, hour).await.unwrap();
    assert_eq!(p.cached_record().await.unwrap(), Some(reset));
    let ttl: i64 = deadpool_redis::redis::cmd("PTTL")
        .arg(p.record_key())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0, "a replaced cache has a time to live: {ttl}");
}

/// Keys carry the prefix as a Redis Cluster hash tag, so one installation's keys
/// share a slot.
#[test]
fn redis_keys_carry_a_hash_tag() {
    let pool = axum_whos_online::redis_pool(&common::redis_url()).unwrap();
    let p = RedisPresence::new(pool, "site");
    assert_eq!(p.users_key(), "{site}:users");
    assert_eq!(p.visitors_key(), "{site}:visitors");
    assert_eq!(p.record_key(), "{site}:record");
}

/// A dead Redis fails fast with an error, never a hang or a panic.
#[tokio::test]
async fn dead_redis_errors_quickly() {
    let p = RedisPresence::new(common::dead_redis(), "dead");
    let started = std::time::Instant::now();
    assert!(p.mark_seen(T, &batch(&["a"], &[])).await.is_err());
    assert!(p.snapshot(T, 10).await.is_err());
    assert!(p.cached_record().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
}
