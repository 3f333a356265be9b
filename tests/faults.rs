//! Faults against real processes: a private `redis-server` that is killed,
//! restarted or flushed, and a TCP proxy in front of the shared Redis or Postgres
//! that is cut or slowed. Every request of the host app must succeed throughout,
//! and nothing reported may be lost once the store is back.
//!
//! Progress is awaited by polling with a deadline (`flush()` then read), never by
//! sleeping for a guessed time.

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum_whos_online::{PostgresRecord, PresenceStore, RecordStore, RedisPresence, redis_pool};
use common::proxy::Proxy;
use common::servers::RedisServer;
use common::{ClockExt, Site, Stack};
use http::Request;
use sqlx::postgres::PgPoolOptions;
use tower::{Layer, Service, ServiceExt};

/// Polls `check` every 50 ms until it holds; panics after `limit`. Returns how
/// long it took.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the user `name` is listed by `/online` after a flush.
async fn listed(site: &Site, name: &str) -> bool {
    let _ = site.whos.flush().await;
    match site.whos.refresh_now().await {
        Ok(view) => view.users().iter().any(|u| u == name),
        Err(_) => false,
    }
}

/// Whether the store itself lists the user `name` (the view lists only the
/// most recent 1,000), after a flush.
async fn stored(site: &Site, store: &RedisPresence, name: &str) -> bool {
    let _ = site.whos.flush().await;
    match store.snapshot(0, 1_000_000).await {
        Ok(s) => s.recent.iter().any(|(u, _)| u == name),
        Err(_) => false,
    }
}

/// Steady load through the app from distinct users `{tag}{i}` until stopped:
/// counts the requests, the non-200 answers and the slowest answer.
struct Load {
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicU64>,
    slowest_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(site: Arc<Site>, tag: &'static str) -> Self {
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let slowest_us = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, f, w, halt) = (
            sent.clone(),
            failed.clone(),
            slowest_us.clone(),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            let app = site.app();
            let mut i = 0usize;
            while !halt.load(Ordering::Relaxed) {
                let mut req = common::request_from("10.1.0.1", "/");
                req.headers_mut()
                    .insert("x-user", format!("{tag}{i}").parse().unwrap());
                let t = Instant::now();
                let res = app.clone().oneshot(req).await.unwrap();
                w.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                if res.status() != 200 {
                    f.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
                s.store(i, Ordering::Relaxed);
                // A steady few thousand requests a second, not a busy loop.
                if i.is_multiple_of(20) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
        });
        Self {
            sent,
            failed,
            slowest_us,
            stop,
            task,
        }
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    async fn stop(self) -> (usize, u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            Duration::from_micros(self.slowest_us.load(Ordering::Relaxed)),
        )
    }
}

/// Redis killed (SIGKILL) under load and started again, empty: every request
/// succeeds; reports made while it was down are kept and written once it is
/// back, without restarting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_then_back() {
    let mut redis = RedisServer::start().await;
    let site = Arc::new(
        Site::with(Stack::Real, |b| {
            b.redis(redis_pool(&redis.url()).unwrap())
                .flush_interval(Duration::from_millis(50))
        })
        .await,
    );
    let store = RedisPresence::new(redis_pool(&redis.url()).unwrap(), &site.prefix);
    let load = Load::start(site.clone(), "u");
    eventually("load written", Duration::from_secs(10), || {
        stored(&site, &store, "u10")
    })
    .await;
    let good = site.whos.refresh_now().await.unwrap();

    redis.kill();
    let killed_at = Instant::now();
    // Every user from here on is reported while Redis is down.
    let first_after_kill = load.sent();
    // Down for a second at least, and seen to be down.
    eventually("writes failing", Duration::from_secs(10), || async {
        let _ = site.whos.flush().await;
        site.whos.counters().flush_errors >= 3 && killed_at.elapsed() >= Duration::from_secs(1)
    })
    .await;
    // The view keeps the last good values, and says how old they are.
    assert!(site.whos.refresh_now().await.is_err(), "Redis is down");
    let kept = site.whos.view();
    assert_eq!(kept.as_of(), good.as_of());
    assert!(kept.user_count() >= good.user_count());
    let (status, online) = site.get_json("/online").await;
    assert_eq!(status, 200, "{online}");
    assert_eq!(online["user_count"], kept.user_count());
    let down_for = load.sent() - first_after_kill;

    redis.restart().await;
    let down_secs = killed_at.elapsed().as_secs_f64();
    let back_in = eventually(
        "reports resume after restart",
        Duration::from_secs(10),
        || async {
            let marker = format!("u{}", load.sent().saturating_sub(1));
            stored(&site, &store, &marker).await
        },
    )
    .await;
    let (sent, failed, slowest) = load.stop().await;
    site.settle().await;

    assert_eq!(failed, 0, "every request of the host app succeeded");
    let c = site.whos.counters();
    assert_eq!((c.reports_dropped, c.pending_dropped), (0, 0));
    // The restarted Redis is empty: what was written before the kill is gone
    // until those users come back. Everything reported since the kill is there.
    let seen = store.snapshot(0, 1_000_000).await.unwrap();
    let present: std::collections::HashSet<&str> =
        seen.recent.iter().map(|(u, _)| u.as_str()).collect();
    // And the view is back to the store's counts, newer than the one kept.
    site.clock.advance_secs(1);
    let view = site.whos.refresh_now().await.unwrap();
    assert_eq!(view.user_count(), seen.counts.users);
    assert!(view.as_of() > good.as_of());
    let missing: Vec<usize> = (first_after_kill..sent)
        .filter(|i| !present.contains(format!("u{i}").as_str()))
        .collect();
    assert!(missing.is_empty(), "lost reports: {missing:?}");
    eprintln!(
        "redis killed: {sent} requests, 0 failed, slowest {slowest:?}; down {down_secs:.2} s, \
         {down_for} reported while down, {} flush errors; reports back {back_in:?} after restart",
        c.flush_errors
    );
}

/// Redis slow (every request held 2 s by the proxy, so each write times out):
/// requests through the layer stay fast, and the queue drops and counts instead
/// of growing. Once the link is fast again, reports arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slow_keeps_requests_fast_and_the_queue_bounded() {
    let shared: SocketAddr = common::redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("REDIS_URL as redis://host:port");
    let proxy = Proxy::start(shared).await;
    let site = Site::with(Stack::Real, |b| {
        b.redis(redis_pool(&proxy.url("redis")).unwrap())
            .queue_capacity(64)
            .max_pending(50)
            .flush_interval(Duration::from_millis(20))
    })
    .await;
    site.visit_as("before", "10.0.0.1").await;
    assert!(listed(&site, "before").await);

    let delay = Duration::from_secs(2);
    proxy.slow(delay);
    let app = site.app();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut slowest = Duration::ZERO;
    // Keep sending for longer than one stalled write, from distinct visitors.
    while started.elapsed() < delay + Duration::from_millis(700) {
        let ip = Ipv4Addr::from(0x0a02_0000 + sent as u32).to_string();
        let t = Instant::now();
        let res = app
            .clone()
            .oneshot(common::request_from(&ip, "/"))
            .await
            .unwrap();
        slowest = slowest.max(t.elapsed());
        assert_eq!(res.status(), 200);
        sent += 1;
        if sent.is_multiple_of(10) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let c = site.whos.counters();
    assert!(
        slowest < Duration::from_millis(500),
        "a request took {slowest:?} while Redis answered after {delay:?}"
    );
    assert!(c.reports_dropped > 0, "the queue should have filled: {c:?}");
    assert!(
        c.pending_dropped > 0,
        "pending should have hit its cap: {c:?}"
    );
    assert!(c.flush_errors > 0, "writes should have timed out: {c:?}");
    // Sent + the warm-up + the page for `listed`: every report is either queued
    // or dropped and counted, nothing waits.
    assert_eq!(c.reports_queued + c.reports_dropped, sent + 1);

    proxy.restore();
    // The queue may still be full when the first of these arrives: a dropped
    // report is not retried by the layer, the next page view is.
    let back_in = eventually(
        "reports after the slowdown",
        Duration::from_secs(15),
        || async {
            site.visit_as("after", "10.0.0.2").await;
            listed(&site, "after").await
        },
    )
    .await;
    eprintln!(
        "redis slow ({delay:?}): {sent} requests, slowest {slowest:?}; queued {}, dropped {} \
         (queue 64), pending dropped {} (max 50), flush errors {}; reports back {back_in:?} \
         after restore",
        c.reports_queued, c.reports_dropped, c.pending_dropped, c.flush_errors
    );
}

/// Postgres cut while ticking: ticks go on, the record is not lowered, and the
/// higher count seen while it was down is written, with the time it was seen,
/// once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_during_ticks_keeps_the_raise() {
    let db = common::migrated_database().await;
    let opts = (*db.connect_options()).clone();
    let proxy = Proxy::to_port(opts.get_port()).await;
    let through_proxy = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(opts.host("127.0.0.1").port(proxy.port()));
    let site = Site::with(Stack::Real, |b| b.postgres(through_proxy)).await;
    let truth = PostgresRecord::new(db.clone()).with_site(&site.prefix);

    for u in ["a", "b"] {
        site.visit_as(u, "10.0.0.1").await;
    }
    site.whos.flush().await.unwrap();
    let first = site.whos.tick_now().await.unwrap();
    assert!(first.raised);
    assert_eq!(truth.load().await.unwrap().max_users, 2);

    proxy.cut();
    site.clock.advance_secs(60);
    for u in ["c", "d", "e", "f", "g"] {
        site.visit_as(u, "10.0.0.1").await;
    }
    site.whos.flush().await.unwrap();
    let peak_at = site.clock.now_for_test();
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!(tick.counts.users, 7);
    assert!(!tick.raised && tick.raise_pending);
    assert!(tick.record.max_users >= 2, "never lowered");
    // /stats still answers, from the view: never below the 7 online beside
    // it, though Postgres still holds 2 (the raise waits for it).
    let (status, stats) = site.get_json("/stats").await;
    assert_eq!(
        (status.as_u16(), stats["max_users"].as_u64()),
        (200, Some(7))
    );

    // The peak passes while Postgres is still down; ticks go on.
    site.clock.advance_secs(901);
    for _ in 0..2 {
        let tick = site.whos.tick_now().await.unwrap();
        assert_eq!(tick.counts.users, 0);
        assert!(tick.raise_pending);
        assert!(tick.record.max_users >= 2);
    }
    assert_eq!(
        truth.load().await.unwrap().max_users,
        2,
        "Postgres untouched"
    );

    proxy.restore();
    let tick = site.whos.tick_now().await.unwrap();
    assert!(!tick.raise_pending, "the kept raise is written: {tick:?}");
    let stored = truth.load().await.unwrap();
    assert_eq!(stored.max_users, 7);
    assert_eq!(stored.max_users_date, Some(peak_at));
    let (_, stats) = site.get_json("/stats").await;
    assert_eq!(stats["max_users"], 7);
    eprintln!(
        "postgres down: record errors {}, ticks {}, record 2 kept then 7 written on return",
        site.whos.counters().record_errors,
        site.whos.counters().ticks
    );
}

/// Redis loses everything (FLUSHALL): the record comes back from Postgres, and
/// presence refills as requests come in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushed_record_returns_and_presence_refills() {
    let redis = RedisServer::start().await;
    let site = Site::with(Stack::Real, |b| b.redis(redis_pool(&redis.url()).unwrap())).await;
    for u in ["a", "b", "c"] {
        site.visit_as(u, "10.0.0.1").await;
    }
    site.visit("10.0.0.2").await;
    site.settle().await;
    let before = site.whos.tick_now().await.unwrap().record;
    assert_eq!((before.max_users, before.max_visitors), (3, 1));

    assert_eq!(redis.cli(&["FLUSHALL"]).trim(), "OK");
    let online = site.whos.refresh_now().await.unwrap().online(100);
    assert_eq!((online.user_count, online.visitor_count), (0, 0));
    // The record is read from Postgres and the cache filled again.
    assert_eq!(site.whos.record().await.unwrap(), before);
    let (_, stats) = site.get_json("/stats").await;
    assert_eq!(stats["max_users"], 3);
    let record_key = format!("{{{}}}:record", site.prefix);
    assert_eq!(redis.cli(&["HGET", &record_key, "max_users"]).trim(), "3");
    // A tick with fewer online does not lower it. (A member the layer handed on
    // within the de-duplication resolution, 30 s by default, is not reported
    // again until it passes: the clock moves on a minute.)
    site.clock.advance_secs(60);
    site.visit_as("a", "10.0.0.1").await;
    site.settle().await;
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!(tick.counts.users, 1);
    assert_eq!(tick.record, before);
    // Presence refills as people come back.
    for u in ["b", "c", "d"] {
        site.visit_as(u, "10.0.0.1").await;
    }
    site.settle().await;
    assert_eq!(
        site.whos.online(100).await.unwrap().users,
        ["a", "b", "c", "d"]
    );
    // The view raised the record to them at once; the tick finds it done.
    assert_eq!(site.whos.record().await.unwrap().max_users, 4);
    assert!(!site.whos.tick_now().await.unwrap().raised);
    assert_eq!(site.whos.record().await.unwrap().max_users, 4);
}

/// Redis emptied: once a write notices (the store's own marker key is gone),
/// members written lately are written again at their next request, not only
/// after the de-duplication resolution; visitors too, under whatever day key
/// the instances now share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_emptied_members_come_back_at_their_next_request() {
    let redis = RedisServer::start().await;
    let site = Site::with(Stack::Real, |b| b.redis(redis_pool(&redis.url()).unwrap())).await;
    site.visit_as("a", "10.0.0.1").await;
    site.visit("10.0.0.2").await;
    site.settle().await;
    assert_eq!(redis.cli(&["FLUSHALL"]).trim(), "OK");

    // The clock does not move: everyone is well within the resolution. A new
    // member's write notices the loss. The day's secret went with the data,
    // and that write keys it anew (a user's write carries the visitor
    // pseudonym of the user's address, to remove it)...
    site.visit_as("z", "10.0.0.3").await;
    site.settle().await;
    assert_eq!(site.whos.counters().visitor_secret_changes, 1);
    // ...and the earlier ones are written at their next request.
    site.visit_as("a", "10.0.0.1").await;
    site.visit("10.0.0.2").await;
    site.settle().await;
    let online = site.whos.online(100).await.unwrap();
    assert_eq!(online.users, ["a", "z"]);
    assert_eq!(online.visitor_count, 1);
    site.visit("10.0.0.4").await;
    site.settle().await;
    assert_eq!(site.whos.view().visitor_count(), 2);
    assert_eq!(site.whos.counters().reports_queued, 6);
    assert_eq!(site.whos.counters().visitor_secret_changes, 1);
    // ...and once settled, not again: further writes find marker and secret.
    site.visit("10.0.0.2").await;
    site.visit("10.0.0.4").await;
    site.settle().await;
    assert_eq!(site.whos.counters().reports_queued, 6);
}

/// Graceful shutdown with reports still queued (the flush interval is an hour):
/// all of them are in the store after `shutdown().await`.
async fn shutdown_writes_every_queued_report(stack: Stack) {
    let site = Site::with(stack, |b| b.flush_interval(Duration::from_secs(3600))).await;
    for i in 0..300 {
        site.visit_as(&format!("user{i}"), "10.0.0.1").await;
        site.visit(&format!("10.3.{}.{}", i / 200, i % 200)).await;
    }
    site.whos.shutdown().await.unwrap();
    let c = site.whos.counters();
    assert_eq!((c.reports_queued, c.reports_dropped), (600, 0));
    // Read the store itself, not through the stopped handle.
    let online = match stack {
        Stack::Real => {
            let store = RedisPresence::from_url(&common::redis_url(), &site.prefix).unwrap();
            store.snapshot(0, 10_000).await.unwrap().online(usize::MAX)
        }
        Stack::Memory => site.whos.refresh_now().await.unwrap().online(10_000),
    };
    assert_eq!((online.user_count, online.visitor_count), (300, 300));
}

/// `max_members` keeps the most recently seen members of each set, on both stores
/// alike (ties by member, as a Redis rank orders them).
async fn max_members_keeps_the_most_recent(stack: Stack) {
    let site = Site::with(stack, |b| b.max_members(3)).await;
    for i in 0..6 {
        site.visit_as(&format!("u{i}"), "10.0.0.1").await;
        site.visit(&format!("10.4.0.{i}")).await;
        site.settle().await;
        site.clock.advance_secs(1);
    }
    let online = site.whos.online(100).await.unwrap();
    assert_eq!(online.users, ["u3", "u4", "u5"]);
    assert_eq!((online.user_count, online.visitor_count), (3, 3));
    // Five at once, one time: the three greatest names stay.
    for n in ["e", "a", "d", "b", "c"] {
        site.visit_as(n, "10.0.0.1").await;
    }
    site.settle().await;
    assert_eq!(site.whos.online(100).await.unwrap().users, ["c", "d", "e"]);
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!((tick.counts.users, tick.counts.visitors), (3, 3));
}

/// Resident memory of this process, in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A flood of distinct visitor addresses straight through the layer (around a
/// no-op service): the queue and the pending set stay within their caps and
/// count what they drop, and `max_members` bounds the store.
async fn flood_of_distinct_visitors_stays_bounded(stack: Stack) {
    const N: u32 = 1_000_000;
    const MAX_MEMBERS: u64 = 20_000;
    let site = Site::with(stack, |b| {
        b.queue_capacity(8192)
            .max_pending(50_000)
            .max_members(MAX_MEMBERS as usize)
            .flush_interval(Duration::from_millis(100))
    })
    .await;
    let mut svc = site
        .whos
        .layer()
        .layer(tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(())
        }));
    let rss_before = rss_kib();
    let started = Instant::now();
    for i in 0..N {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
        let mut req = Request::new(Body::empty());
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
        svc.ready().await.unwrap().call(req).await.unwrap();
        if i.is_multiple_of(4096) {
            tokio::task::yield_now().await;
        }
    }
    let took = started.elapsed();
    site.settle().await;
    let rss_after = rss_kib();
    let c = site.whos.counters();
    assert_eq!(c.reports_queued + c.reports_dropped, u64::from(N));
    let online = site.whos.online(1).await.unwrap();
    assert!(online.visitor_count <= MAX_MEMBERS, "{online:?}");
    assert!(online.visitor_count > 0);
    // A million addresses held at once (pending set plus an uncapped in-memory
    // store) would take well over 100 MiB; the caps keep the growth to tens, and
    // most of that is the allocator keeping freed batches. Other tests of this
    // binary run alongside, hence the generous bound.
    let grew_mib = rss_after.saturating_sub(rss_before) / 1024;
    assert!(grew_mib < 96, "RSS grew by {grew_mib} MiB");
    eprintln!(
        "flood {stack:?}: {N} visitors in {took:?}; queued {}, dropped {} at the queue, {} at \
         pending; {} written; store holds {}; RSS +{grew_mib} MiB",
        c.reports_queued,
        c.reports_dropped,
        c.pending_dropped,
        c.members_written,
        online.visitor_count
    );
}

on_both_stacks!(
    shutdown_writes_every_queued_report,
    max_members_keeps_the_most_recent,
    flood_of_distinct_visitors_stays_bounded,
);
