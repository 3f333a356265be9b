//! Presence on a Redis Cluster of three masters, started on loopback ports by the
//! test itself (and killed at the end, pass or fail).

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum_whos_online::{PostgresRecord, RecordStore, WhosOnline, redis_cluster_pool};
use common::servers::RedisCluster;
use common::{fragment, page};

fn app(whos: &WhosOnline) -> Router {
    Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .merge(whos.router())
        .layer(whos.layer())
}

/// Two instances on one cluster: writes, reads, ticks, the record cache, the lease
/// and the size cap all work, and every key of the installation sits in one slot
/// on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_three_master_cluster() {
    let started = Instant::now();
    let cluster = RedisCluster::start().await;
    let up_in = started.elapsed();
    let pool = redis_cluster_pool(&cluster.urls()).unwrap();
    let pg = common::migrated_database().await;
    let prefix = common::prefix();
    let build = || {
        WhosOnline::builder()
            .redis_cluster(pool.clone())
            .postgres(pg.clone())
            .identify_users(common::header_user())
            .places(axum_whos_online::place_by_matched_path)
            .prefix(&prefix)
            .tick_interval(Duration::from_millis(100))
            .flush_interval(Duration::from_millis(50))
            .max_members(40)
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    let (app_a, app_b) = (app(&a), app(&b));
    for i in 0..10 {
        page(&app_a, Some(&format!("user{i}")), "10.8.0.1").await;
        page(&app_b, Some(&format!("user{}", i + 5)), "10.8.0.1").await;
    }
    for i in 0..60 {
        let app = if i % 2 == 0 { &app_a } else { &app_b };
        page(app, None, &format!("10.8.1.{i}")).await;
    }
    a.flush().await.unwrap();
    b.flush().await.unwrap();

    let mut answers = Vec::new();
    for whos in [&a, &b] {
        whos.refresh_now().await.unwrap();
        let mut online = fragment(whos, "/online?limit=100").await;
        online.as_object_mut().unwrap().remove("as_of");
        answers.push(online);
    }
    assert_eq!(answers[0], answers[1]);
    let online = answers.swap_remove(0);
    assert_eq!(online["user_count"], 15);
    assert_eq!(online["users"].as_array().unwrap().len(), 15);
    assert_eq!(online["visitor_count"], 40, "capped by max_members");

    // Places: everyone was at "/", the cap's trims included; both instances
    // agree. The scripts reach the per-place keys of the same slot.
    for whos in [&a, &b] {
        let home = whos.online_in("/", 100);
        assert_eq!((home.user_count, home.visitor_count), (15, 40));
        assert_eq!(home.users.len(), 15);
        let places = fragment(whos, "/online/places").await;
        assert_eq!(
            places["places"],
            serde_json::json!([{"place": "/", "users": 15, "visitors": 40, "bots": 0}])
        );
    }

    let tick = a.tick_now().await.unwrap();
    assert_eq!((tick.counts.users, tick.counts.visitors), (15, 40));
    let stats = fragment(&b, "/stats").await;
    assert_eq!(stats["max_users"], 15);
    assert_eq!(
        PostgresRecord::new(pg.clone())
            .with_site(&prefix)
            .load()
            .await
            .unwrap()
            .max_users,
        15
    );

    // One of the two takes the tick lease.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(a.holds_tick_lease() || b.holds_tick_lease()) {
        assert!(Instant::now() < deadline, "no instance took the lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every key is in the slot of the hash tag, all on one node.
    let keys = [
        "users",
        "visitors",
        "record",
        "tick-lease",
        "where",
        "places",
        "place-counts",
    ]
    .map(|k| format!("{{{prefix}}}:{k}"));
    let slot = cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", &keys[0]]);
    for key in &keys {
        assert_eq!(cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]), slot);
    }
    let owners: Vec<u16> = cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["EXISTS", &keys[0]]).trim() == "1")
        .map(|n| n.port())
        .collect();
    assert_eq!(
        owners.len(),
        1,
        "one node holds the installation: {owners:?}"
    );
    let node = cluster
        .nodes
        .iter()
        .find(|n| n.port() == owners[0])
        .unwrap();
    for key in keys[..3].iter().chain(&keys[4..]) {
        assert_eq!(node.cli(&["EXISTS", key]).trim(), "1", "{key}");
    }
    // The lease is renewed every 100 ms and lasts 200 ms: look until it is seen.
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.cli(&["EXISTS", &keys[3]]).trim() != "1" {
        assert!(Instant::now() < deadline, "the lease is not on the node");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "cluster up in {up_in:?}; slot {} on node :{}",
        slot.trim(),
        owners[0]
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
