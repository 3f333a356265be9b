//! Visitor pseudonyms under Redis faults: whatever the order of data loss,
//! restarts, evictions of the day's secret and concurrent instances, each
//! visitor and bot is one member per day, so it is never counted twice, and the
//! record never takes a doubled count.
//!
//! Every first batch after a fault holds users, visitors and bots, so that the
//! write that meets the fault is one that keys members.

mod common;

use axum::body::Body;
use axum_whos_online::{ManualClock, WhosOnline, redis_pool};
use common::servers::RedisServer;
use common::{ClockExt, Site, Stack, request_from};
use http::Request;

const USERS: [&str; 3] = ["ann", "bob", "cy"];
const VISITORS: [&str; 5] = [
    "10.1.0.1",
    "10.1.0.2",
    "10.1.0.3",
    "2001:db8:7:1::1",
    "2001:db8:7:2::1",
];
const BOTS: [&str; 3] = ["66.249.66.1", "66.249.66.2", "66.249.66.3"];
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1)";

/// One instance of a site on a private Redis (shared prefix and clock).
async fn instance(redis: &RedisServer, prefix: &str, clock: &ManualClock) -> WhosOnline {
    let pg = common::migrated_database().await;
    WhosOnline::builder()
        .redis(redis_pool(&redis.url()).unwrap())
        .postgres(pg)
        .identify_users(common::header_user())
        .clock(clock.clone())
        .prefix(prefix)
        .background_ticker(false)
        .server_time(false)
        .build()
        .unwrap()
}

fn app(whos: &WhosOnline) -> axum::Router {
    axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .layer(whos.layer())
}

/// Every user, visitor and bot of the universe (or the given part of it)
/// requests a page; the host's requests all succeed.
async fn everyone(whos: &WhosOnline, visitors: &[&str]) {
    let app = app(whos);
    for u in USERS {
        common::page(&app, Some(u), "10.9.9.9").await;
    }
    for ip in visitors {
        common::page(&app, None, ip).await;
    }
    for ip in BOTS {
        let mut req: Request<Body> = request_from(ip, "/");
        req.headers_mut()
            .insert("user-agent", GOOGLEBOT.parse().unwrap());
        use tower::ServiceExt;
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);
    }
    whos.flush().await.unwrap();
}

fn counts(o: &axum_whos_online::Online) -> (u64, u64, u64) {
    (o.user_count, o.visitor_count, o.bot_count)
}

const TRUTH: (u64, u64, u64) = (3, 5, 3);

/// Redis restarts empty (the default configuration keeps the day's secret in
/// Redis): the first write after it still holds the old secret in its cache.
/// Before the fix it wrote every visitor under that secret, then under a new
/// one: `visitor_count` and the record doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_never_counts_a_visitor_twice() {
    let mut redis = RedisServer::start().await;
    let clock = ManualClock::at_unix(1_764_000_000);
    let whos = instance(&redis, &common::prefix(), &clock).await;
    everyone(&whos, &VISITORS).await;
    assert_eq!(counts(&whos.refresh_now().await.unwrap().online(10)), TRUTH);

    redis.restart().await;
    // Everyone comes back, twice, past the de-dup resolution each time.
    for _ in 0..3 {
        clock.advance_secs(40);
        everyone(&whos, &VISITORS).await;
        assert_eq!(counts(&whos.refresh_now().await.unwrap().online(10)), TRUTH);
    }
    let tick = whos.tick_now().await.unwrap();
    assert_eq!(
        (tick.record.max_users, tick.record.max_visitors),
        (TRUTH.0, TRUTH.1)
    );
    whos.shutdown().await.unwrap();
}

/// Two instances, each with the secret cached, meet an emptied Redis; and then
/// the day's secret alone is deleted (as an eviction would) while the members
/// stay. Neither fault splits them onto two secrets: the counts never exceed
/// the truth, and come back to it at the next requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_keep_one_secret_through_flushes_and_evictions() {
    let redis = RedisServer::start().await;
    let clock = ManualClock::at_unix(1_764_000_000);
    let prefix = common::prefix();
    let a = instance(&redis, &prefix, &clock).await;
    let b = instance(&redis, &prefix, &clock).await;
    everyone(&a, &VISITORS).await;
    everyone(&b, &VISITORS).await;
    assert_eq!(counts(&a.refresh_now().await.unwrap().online(10)), TRUTH);

    let day = clock.now_for_test().date_naive();
    let secret_key = format!("{{{prefix}}}:visitor-key:{day}");
    for fault in [vec!["FLUSHALL"], vec!["DEL", secret_key.as_str()]] {
        assert!(!redis.cli(&fault).trim().is_empty());
        for _ in 0..3 {
            clock.advance_secs(40);
            // Each instance serves part of the visitors, then all of them.
            everyone(&a, &VISITORS[..3]).await;
            everyone(&b, &VISITORS[2..]).await;
            for whos in [&a, &b] {
                let (u, v, bots) = counts(&whos.refresh_now().await.unwrap().online(10));
                assert!(
                    u <= TRUTH.0 && v <= TRUTH.1 && bots <= TRUTH.2,
                    "after {fault:?}: {u}/{v}/{bots} above the truth {TRUTH:?}"
                );
            }
        }
        assert_eq!(
            counts(&b.refresh_now().await.unwrap().online(10)),
            TRUTH,
            "{fault:?}"
        );
    }
    let tick = a.tick_now().await.unwrap();
    assert_eq!(
        (tick.counts.users, tick.counts.visitors, tick.counts.bots),
        TRUTH
    );
    assert_eq!(tick.record.max_visitors, TRUTH.1);
    let lost = a.counters().stale_members_removed + b.counters().stale_members_removed;
    assert!(lost > 0, "the secret's deletion removed its members");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// The in-memory store keeps to the same rule (it cannot lose its secret):
/// a site's visitors and bots are one member each, flush after flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_keys_each_visitor_once() {
    let site = Site::new(Stack::Memory).await;
    for _ in 0..3 {
        site.clock.advance_secs(40);
        everyone(&site.whos, &VISITORS).await;
        assert_eq!(
            counts(&site.whos.refresh_now().await.unwrap().online(10)),
            TRUTH
        );
    }
}
