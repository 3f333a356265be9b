//! Many instances of one site: each its own `WhosOnline` (layer, reporter,
//! ticker), all sharing a prefix, the shared Redis and one Postgres database.

mod common;

use std::time::Duration;

use axum::Router;
use axum_whos_online::{Clock, ManualClock, PostgresRecord, RecordStore, WhosOnline, redis_pool};
use chrono::{DateTime, Utc};
use common::{ClockExt, fragment, page};
use deadpool_redis::redis;

/// The host app of one instance: a page, the fragment and the layer.
fn app(whos: &WhosOnline) -> Router {
    Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .merge(whos.router())
        .layer(whos.layer())
}

/// One wave of `users` distinct users and `visitors` distinct addresses, sent to
/// all instances at once: each user and visitor visits two instances.
async fn wave(fleet: &[WhosOnline], tag: &str, users: usize, visitors: usize) {
    let n = fleet.len();
    let mut tasks = Vec::new();
    for (k, whos) in fleet.iter().enumerate() {
        let app = app(whos);
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in (0..users).filter(|i| i % n == k || (i + 1) % n == k) {
                page(&app, Some(&format!("{tag}-u{i}")), "10.6.0.1").await;
            }
            for i in (0..visitors).filter(|i| i % n == k || (i + 1) % n == k) {
                let ip = format!("10.6.{}.{}", 1 + i / 250, i % 250);
                page(&app, None, &ip).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for whos in fleet {
        whos.flush().await.unwrap();
    }
}

/// `/online` on every instance, which must all agree; returns the common body.
async fn agreed_online(fleet: &[WhosOnline]) -> serde_json::Value {
    // Each instance's view, refreshed now; `as_of` is each one's own.
    let mut answers = Vec::new();
    for whos in fleet {
        whos.refresh_now().await.unwrap();
        let mut online = fragment(whos, "/online?limit=10000").await;
        online.as_object_mut().unwrap().remove("as_of");
        answers.push(online);
    }
    for (i, online) in answers.iter().enumerate().skip(1) {
        assert_eq!(*online, answers[0], "instance {i} disagrees");
    }
    answers.swap_remove(0)
}

/// Four instances under concurrent load from distinct users, in three waves of
/// 80, 120 and 60 users, each wave leaving the window before the next. Their
/// background tickers run throughout (one at a time, through the lease) and all
/// four also tick at once at the end of each wave. `/online` agrees everywhere,
/// and the record is the true peak (the second wave), with its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_agree_and_the_record_is_the_true_peak() {
    let prefix = common::prefix();
    let pg = common::migrated_database().await;
    // One manual time for the fleet, so waves can leave the window at once.
    let clock = ManualClock::at_unix(1_764_000_000);
    let fleet: Vec<WhosOnline> = (0..4)
        .map(|_| {
            WhosOnline::builder()
                .max_limit(10_000)
                .redis(redis_pool(&common::redis_url()).unwrap())
                .postgres(pg.clone())
                .identify_users(common::header_user())
                .prefix(&prefix)
                .clock(clock.clone())
                .server_time(false)
                .tick_interval(Duration::from_millis(100))
                .flush_interval(Duration::from_millis(50))
                .build()
                .unwrap()
        })
        .collect();

    let mut peak: Option<(u64, DateTime<Utc>)> = None;
    for (tag, users, visitors) in [("w1", 80, 40), ("w2", 120, 90), ("w3", 60, 30)] {
        wave(&fleet, tag, users, visitors).await;
        let online = agreed_online(&fleet).await;
        assert_eq!(online["user_count"], users as u64, "{tag}");
        assert_eq!(online["visitor_count"], visitors as u64, "{tag}");
        assert_eq!(online["users"].as_array().unwrap().len(), users);

        // Everyone ticks at once: harmless, whoever holds the lease.
        let ticks = futures_join_all(
            fleet
                .iter()
                .cloned()
                .map(|w| async move { w.tick_now().await.unwrap() }),
        )
        .await;
        for t in &ticks {
            assert_eq!(t.counts.users, users as u64);
        }
        if peak.is_none_or(|(p, _)| users as u64 > p) {
            peak = Some((users as u64, clock.now_for_test()));
        }
        let (max, _) = peak.unwrap();
        let stats = fragment(&fleet[0], "/stats").await;
        for whos in &fleet[1..] {
            assert_eq!(fragment(whos, "/stats").await, stats);
        }
        assert_eq!(stats["max_users"], max, "after {tag}");
        // The wave leaves the window.
        clock.advance_secs(901);
    }
    let (max, at) = peak.unwrap();
    let truth = PostgresRecord::new(pg.clone())
        .with_site(&prefix)
        .load()
        .await
        .unwrap();
    assert_eq!(truth.max_users, max);
    assert_eq!(truth.max_users_date, Some(at));
    assert_eq!(truth.max_visitors, 90);
    for whos in &fleet {
        assert_eq!(whos.record().await.unwrap(), truth);
    }
    // Exactly one instance was the lease holder at its last background tick,
    // unless the lease just moved.
    let holders = fleet.iter().filter(|w| w.holds_tick_lease()).count();
    assert!(
        holders <= 2,
        "{holders} instances think they hold the lease"
    );
    for whos in &fleet {
        whos.shutdown().await.unwrap();
    }
}

/// Runs the futures concurrently and collects their outputs in order.
async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut n = 0;
    for (i, f) in futs.into_iter().enumerate() {
        set.spawn(async move { (i, f.await) });
        n += 1;
    }
    let mut out: Vec<Option<F::Output>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, v) = r.unwrap();
        out[i] = Some(v);
    }
    out.into_iter().map(Option::unwrap).collect()
}

async fn lease_holder(prefix: &str) -> Option<String> {
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(format!("{{{prefix}}}:tick-lease"))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// With background tickers every 100 ms on four instances, the fleet ticks about
/// once per interval, not four times: only the lease holder prunes and raises.
/// When the holder shuts down it lets go, and another takes over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_ticks_per_interval() {
    let prefix = common::prefix();
    let every = Duration::from_millis(100);
    let fleet: Vec<WhosOnline> = (0..4)
        .map(|_| {
            WhosOnline::builder()
                .max_limit(10_000)
                .redis(redis_pool(&common::redis_url()).unwrap())
                .prefix(&prefix)
                .tick_interval(every)
                .build()
                .unwrap()
        })
        .collect();
    let holder = || fleet.iter().position(WhosOnline::holds_tick_lease);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while holder().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "nobody took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Count ticks over a window of time (measured, not synchronised on).
    let before: Vec<u64> = fleet.iter().map(|w| w.counters().ticks).collect();
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let elapsed = started.elapsed();
    let deltas: Vec<u64> = fleet
        .iter()
        .zip(&before)
        .map(|(w, b)| w.counters().ticks - b)
        .collect();
    let total: u64 = deltas.iter().sum();
    let intervals = (elapsed.as_millis() / every.as_millis()) as u64;
    assert!(total >= 3, "the fleet should tick: {deltas:?}");
    // Four instances ticking on their own would make about 4 x intervals.
    assert!(
        total <= intervals + intervals / 2 + 2,
        "{total} ticks in {intervals} intervals: {deltas:?}"
    );
    // The lease names one of the fleet, which knows it holds it.
    let id = lease_holder(&prefix).await.expect("the lease is held");
    let h = fleet
        .iter()
        .position(|w| w.instance_id() == id)
        .expect("the holder is one of the fleet");
    assert!(fleet[h].holds_tick_lease());

    // The holder shuts down and releases: another instance takes over.
    fleet[h].shutdown().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now_holder = lease_holder(&prefix).await;
        if let Some(id) = now_holder
            && id != fleet[h].instance_id()
        {
            assert!(fleet.iter().any(|w| w.instance_id() == id));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "nobody took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "lease: {total} ticks in {intervals} intervals of {every:?} across 4 instances \
         ({deltas:?})"
    );
    for whos in &fleet {
        whos.shutdown().await.unwrap();
    }
}

/// A clock that is `offset` seconds off the system clock.
struct Skewed(i64);

impl Clock for Skewed {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::TimeDelta::seconds(self.0)
    }
}

/// One instance's clock is ten minutes fast and another's ten minutes slow; with
/// server time (the default with Redis) all three stamp and prune on Redis time,
/// so they count the same members, and the fast one's tick prunes no one. An
/// instance with the same fast clock but server time off sees nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_clocks_count_right_on_server_time() {
    let prefix = common::prefix();
    let window = Duration::from_secs(300);
    let build = |clock: Skewed, server_time: bool| {
        WhosOnline::builder()
            .max_limit(10_000)
            .redis(redis_pool(&common::redis_url()).unwrap())
            .identify_users(common::header_user())
            .prefix(&prefix)
            .window(window)
            .clock(clock)
            .server_time(server_time)
            .background_ticker(false)
            .build()
            .unwrap()
    };
    let fleet = [
        build(Skewed(0), true),
        build(Skewed(600), true),
        build(Skewed(-600), true),
    ];
    for (whos, name) in fleet.iter().zip(["alice", "bob", "carol"]) {
        page(&app(whos), Some(name), "10.7.0.1").await;
        whos.flush().await.unwrap();
    }
    for whos in &fleet {
        let online = whos.refresh_now().await.unwrap().online(100);
        assert_eq!(online.users, ["alice", "bob", "carol"]);
    }
    // The fast instance ticks: its cutoff is Redis time minus the window.
    assert_eq!(fleet[1].tick_now().await.unwrap().counts.users, 3);
    assert_eq!(fleet[2].tick_now().await.unwrap().counts.users, 3);

    // Every score is Redis time, whatever the writer's clock.
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (server_now, _): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    for name in ["alice", "bob", "carol"] {
        let score: f64 = redis::cmd("ZSCORE")
            .arg(format!("{{{prefix}}}:users"))
            .arg(name)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            (server_now - score as i64).abs() <= 10,
            "{name} at {score}, Redis at {server_now}"
        );
    }
    // The control: the same fast clock without server time puts the cutoff five
    // minutes into the future and sees nobody.
    let fast_local = build(Skewed(600), false);
    assert_eq!(fast_local.refresh_now().await.unwrap().user_count(), 0);
    for whos in fleet.iter().chain([&fast_local]) {
        whos.shutdown().await.unwrap();
    }
}
