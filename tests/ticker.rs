//! The ticker: pruning, counting, raising the record, and the record cache.

mod common;

use common::{ClockExt, Site, Stack};
use whos_online::{PostgresRecord, Record, RecordStore};

async fn tick_prunes_counts_and_raises(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.visit_as("bob", "10.0.0.2").await;
    site.visit("10.0.0.3").await;
    site.whos.flush().await.unwrap();

    let t0 = site.clock.now_for_test();
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!((tick.counts.users, tick.counts.visitors), (2, 1));
    assert!(tick.raised);
    assert_eq!(tick.record.max_users, 2);
    assert_eq!(tick.record.max_users_date, Some(t0));
    assert_eq!(tick.record.max_visitors, 1);

    // Fifteen minutes later (the window) they are still in; one second more, gone.
    site.clock.advance_secs(900);
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!((tick.counts.users, tick.counts.visitors), (2, 1));
    site.clock.advance_secs(1);
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!((tick.counts.users, tick.counts.visitors), (0, 0));
    assert!(!tick.raised);
    // The record stays where it was.
    assert_eq!(tick.record.max_users, 2);
    assert_eq!(site.whos.record().await.unwrap().max_users_date, Some(t0));
}

async fn record_dates_change_only_on_a_rise(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.whos.flush().await.unwrap();
    let first = site.clock.now_for_test();
    site.whos.tick_now().await.unwrap();

    // Same count a minute later: no raise, the date stays.
    site.clock.advance_secs(60);
    site.visit_as("alice", "10.0.0.1").await;
    site.whos.flush().await.unwrap();
    let tick = site.whos.tick_now().await.unwrap();
    assert!(!tick.raised);
    assert_eq!(
        site.whos.record().await.unwrap().max_users_date,
        Some(first)
    );

    // One more user: raised, with the new date.
    site.clock.advance_secs(60);
    site.visit_as("bob", "10.0.0.2").await;
    site.whos.flush().await.unwrap();
    let second = site.clock.now_for_test();
    let tick = site.whos.tick_now().await.unwrap();
    assert!(tick.raised);
    let r = site.whos.record().await.unwrap();
    assert_eq!((r.max_users, r.max_users_date), (2, Some(second)));
}

/// The seed's trap: its cache returned strings, so `count > cached` never held
/// while the cache was warm. Here the cache is warm throughout and the record rises.
async fn record_rises_while_the_cache_is_warm(stack: Stack) {
    let site = Site::new(stack).await;
    for (i, name) in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
        .iter()
        .enumerate()
    {
        site.visit_as(name, "10.0.0.1").await;
        site.whos.flush().await.unwrap();
        let tick = site.whos.tick_now().await.unwrap();
        assert!(tick.raised, "tick {i} should raise");
        // /stats reads the cache first; it must show the new record at once.
        let (status, stats) = site.get_json("/stats").await;
        assert_eq!(status, 200);
        assert_eq!(stats["max_users"], i as u64 + 1);
    }
    if let Some(pg) = &site.pg {
        let truth = PostgresRecord::new(pg.clone()).load().await.unwrap();
        assert_eq!(truth.max_users, 10);
    }
}

async fn ticks_are_harmless_when_nobody_is_there(stack: Stack) {
    let site = Site::new(stack).await;
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!((tick.counts.users, tick.counts.visitors), (0, 0));
    assert!(!tick.raised);
    assert_eq!(site.whos.record().await.unwrap(), Record::default());
}

on_both_stacks!(
    tick_prunes_counts_and_raises,
    record_dates_change_only_on_a_rise,
    record_rises_while_the_cache_is_warm,
    ticks_are_harmless_when_nobody_is_there,
);

/// Two sites sharing Redis and Postgres tick concurrently many times: the record
/// ends at the true peak and never reads lower than an earlier read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ticks_from_two_instances_never_lower_the_record() {
    let a = Site::new(Stack::Real).await;
    let pg = a.pg.clone().unwrap();
    let b = Site::with(Stack::Real, |builder| {
        builder
            .prefix(&a.prefix)
            .postgres(pg.clone())
            .redis(whos_online::redis_pool(&common::redis_url()).unwrap())
    })
    .await;
    b.clock.set_unix(a.clock.now_for_test().timestamp());
    for i in 0..7 {
        a.visit_as(&format!("user{i}"), "10.0.0.1").await;
    }
    a.whos.flush().await.unwrap();
    let mut last = 0;
    for _ in 0..10 {
        let (ra, rb) = tokio::join!(a.whos.tick_now(), b.whos.tick_now());
        ra.unwrap();
        rb.unwrap();
        let r = a.whos.record().await.unwrap().max_users;
        assert!(r >= last);
        last = r;
    }
    assert_eq!(last, 7);
    assert_eq!(PostgresRecord::new(pg).load().await.unwrap().max_users, 7);
}

/// Postgres down during ticks: ticks go on, nothing is lowered, and the raise is
/// kept pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_store_down_keeps_ticking_and_keeps_the_raise() {
    let site = Site::with(Stack::Real, |b| b.postgres(common::dead_postgres())).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.whos.flush().await.unwrap();
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!(tick.counts.users, 1);
    assert!(!tick.raised);
    assert!(tick.raise_pending);
    let tick = site.whos.tick_now().await.unwrap();
    assert!(tick.raise_pending);
    assert!(site.whos.counters().record_errors >= 2);
}

/// Redis down during ticks: the tick reports an error, counts it, and nothing panics.
#[tokio::test]
async fn presence_store_down_fails_the_tick_cleanly() {
    let site = Site::with(Stack::Real, |b| b.redis(common::dead_redis())).await;
    assert!(site.whos.tick_now().await.is_err());
    assert_eq!(site.whos.counters().tick_errors, 1);
}
