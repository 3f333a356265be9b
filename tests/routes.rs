//! `GET /online` and `GET /stats`: the JSON contract of DESIGN.md.

mod common;

use axum_whos_online::{
    Batch, Counts, Marked, Online, PostgresRecord, PresenceStore, Record, RecordStore,
    RedisPresence,
};
use common::{Site, Stack, request_from};
use http::StatusCode;
use serde_json::json;

async fn online_shape_and_sorting(stack: Stack) {
    let site = Site::new(stack).await;
    for (name, ip) in [
        ("carol", "10.0.0.1"),
        ("alice", "10.0.0.2"),
        ("bob", "10.0.0.3"),
    ] {
        site.visit_as(name, ip).await;
    }
    site.visit("192.0.2.1").await;
    site.visit("192.0.2.2").await;
    site.visit("2001:db8::1").await;
    site.whos.flush().await.unwrap();

    let (status, body) = site.get_json("/online").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"users": ["alice", "bob", "carol"], "user_count": 3,
               "visitor_count": 3, "window_secs": 900, "bot_count": 0})
    );
    // Visitor addresses never appear.
    assert!(!body.to_string().contains("192.0.2"));
}

async fn online_limit_keeps_counts_complete(stack: Stack) {
    let site = Site::new(stack).await;
    for name in ["dave", "carol", "bob", "alice"] {
        site.visit_as(name, "10.0.0.1").await;
        site.whos.flush().await.unwrap();
        site.clock.advance_secs(1);
    }
    // The two seen last were bob and alice.
    let (status, body) = site.get_json("/online?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["users"], json!(["alice", "bob"]));
    assert_eq!(body["user_count"], 4);
    let (_, body) = site.get_json("/online?limit=200").await;
    assert_eq!(body["users"], json!(["alice", "bob", "carol", "dave"]));
}

/// `limit` stops at the site's ceiling: 200 by default, configurable from 1 to
/// 10,000; above it is a JSON 400, and without it at most 100 (or the ceiling).
async fn the_limit_ceiling_is_configurable(stack: Stack) {
    let site = Site::new(stack).await;
    assert_eq!(site.get_json("/online?limit=200").await.0, StatusCode::OK);
    let (status, body) = site.get_json("/online?limit=201").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("1 to 200"),
        "{body}"
    );

    let site = Site::with(stack, |b| b.max_limit(3)).await;
    for name in ["a", "b", "c", "d", "e"] {
        site.visit_as(name, "10.0.0.1").await;
        site.whos.flush().await.unwrap();
        site.clock.advance_secs(1);
    }
    assert_eq!(
        site.get_json("/online?limit=4").await.0,
        StatusCode::BAD_REQUEST
    );
    let (_, body) = site.get_json("/online").await;
    assert_eq!(body["users"], json!(["c", "d", "e"]));
    assert_eq!(body["user_count"], 5);

    for bad in [0, 10_001] {
        assert!(
            axum_whos_online::WhosOnline::builder()
                .max_limit(bad)
                .build()
                .is_err()
        );
    }
}

/// Identical reads within a second share one store read and one encoding,
/// until this instance writes (or ticks) again.
async fn repeated_reads_share_one_store_read(stack: Stack) {
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&reads);
    let site = Site::with(stack, |b| {
        let inner: std::sync::Arc<dyn PresenceStore> = match stack {
            Stack::Real => std::sync::Arc::new(
                RedisPresence::from_url(&common::redis_url(), &common::prefix()).unwrap(),
            ),
            Stack::Memory => std::sync::Arc::new(axum_whos_online::MemoryPresence::new()),
        };
        b.presence_store(CountingReads {
            inner,
            reads: counted,
        })
    })
    .await;
    site.visit_as("alice", "10.0.0.1").await;
    site.whos.flush().await.unwrap();
    let router = site.whos.router::<()>();
    let get = || async {
        use tower::ServiceExt;
        let res = router
            .clone()
            .oneshot(request_from("10.0.0.9", "/online"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        common::json(res).await
    };
    let first = get().await;
    for _ in 0..50 {
        assert_eq!(get().await, first);
    }
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A write of this instance: read again, and the new member shows.
    site.visit_as("bob", "10.0.0.2").await;
    site.whos.flush().await.unwrap();
    assert_eq!(get().await["users"], json!(["alice", "bob"]));
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 2);
    // The window moves with the clock: read again.
    site.clock.advance_secs(1);
    get().await;
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// A presence store that counts `online` reads.
struct CountingReads {
    inner: std::sync::Arc<dyn PresenceStore>,
    reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl PresenceStore for CountingReads {
    async fn mark_seen(&self, at: i64, batch: &Batch) -> axum_whos_online::Result<Marked> {
        self.inner.mark_seen(at, batch).await
    }
    async fn prune_and_count(&self, cutoff: i64) -> axum_whos_online::Result<Counts> {
        self.inner.prune_and_count(cutoff).await
    }
    async fn online(&self, cutoff: i64, limit: usize) -> axum_whos_online::Result<Online> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.online(cutoff, limit).await
    }
}

async fn bad_queries_are_json_400(stack: Stack) {
    let site = Site::new(stack).await;
    for q in [
        "limit=abc",
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=",
        "limit=1.5",
        "limit=99999999999999999999",
        "limit=1&limit=2",
        "unknown=1",
        "limit=%FF",
    ] {
        let (status, body) = site.get_json(&format!("/online?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{q}: {body}"
        );
    }
    let long = format!("/online?limit={}", "9".repeat(10_000));
    assert_eq!(site.get_json(&long).await.0, StatusCode::BAD_REQUEST);
}

async fn stats_refuses_any_query_parameter(stack: Stack) {
    let site = Site::new(stack).await;
    let sixty_kb = "a".repeat(60 * 1024);
    let separators = "&".repeat(60 * 1024);
    for q in [
        "unknown=1",
        "limit=10",
        "x",
        "=",
        "a=1&b=2",
        "%FF=1",
        sixty_kb.as_str(),
        separators.as_str(),
    ] {
        let res = site
            .send(request_from("10.0.0.1", &format!("/stats?{q}")))
            .await;
        let shown = &q[..q.len().min(20)];
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{shown}");
        assert_eq!(res.headers()["content-type"], "application/json", "{shown}");
        assert_eq!(res.headers()["cache-control"], "no-store", "{shown}");
        let body = common::json(res).await;
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("bad query string")),
            "{shown}: {body}"
        );
    }
    // No query, or an empty one, is the record.
    for uri in ["/stats", "/stats?"] {
        let (status, body) = site.get_json(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(body["max_users"], 0, "{uri}");
    }
}

async fn counts_follow_the_window_before_any_prune(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.visit("10.0.0.2").await;
    site.whos.flush().await.unwrap();
    site.clock.advance_secs(901);
    // No tick has run; the answer is still about the window at the time of the call.
    let (_, body) = site.get_json("/online").await;
    assert_eq!(
        body,
        json!({"users": [], "user_count": 0, "visitor_count": 0, "window_secs": 900, "bot_count": 0})
    );
}

async fn stats_empty_then_recorded(stack: Stack) {
    let site = Site::new(stack).await;
    let (status, body) = site.get_json("/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"max_users": 0, "max_users_date": null, "max_visitors": 0, "max_visitors_date": null})
    );

    site.clock.set_unix(1_764_185_364); // 2025-11-26T19:29:24Z
    site.visit_as("alice", "10.0.0.1").await;
    site.visit("10.0.0.2").await;
    site.visit("10.0.0.3").await;
    site.whos.flush().await.unwrap();
    site.whos.tick_now().await.unwrap();
    let (_, body) = site.get_json("/stats").await;
    // Three visitors: the two page views and the first `/stats` call (127.0.0.1),
    // which went through the layer like any request.
    assert_eq!(
        body,
        json!({"max_users": 1, "max_users_date": "2025-11-26T19:29:24Z",
               "max_visitors": 3, "max_visitors_date": "2025-11-26T19:29:24Z"})
    );
}

async fn other_methods_get_json_405(stack: Stack) {
    let site = Site::new(stack).await;
    for uri in ["/online", "/stats"] {
        let mut req = request_from("10.0.0.1", uri);
        *req.method_mut() = http::Method::POST;
        let res = site.send(req).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(common::json(res).await["error"].is_string());
    }
}

async fn responses_are_json_and_not_cached(stack: Stack) {
    let site = Site::new(stack).await;
    for uri in ["/online", "/stats", "/online?limit=x"] {
        let res = site.send(request_from("10.0.0.1", uri)).await;
        assert_eq!(res.headers()["content-type"], "application/json", "{uri}");
        assert_eq!(res.headers()["cache-control"], "no-store", "{uri}");
    }
}

on_both_stacks!(
    online_shape_and_sorting,
    online_limit_keeps_counts_complete,
    the_limit_ceiling_is_configurable,
    repeated_reads_share_one_store_read,
    bad_queries_are_json_400,
    stats_refuses_any_query_parameter,
    counts_follow_the_window_before_any_prune,
    stats_empty_then_recorded,
    other_methods_get_json_405,
    responses_are_json_and_not_cached,
);

/// Redis unreachable: requests through the layer still succeed, `/stats` answers
/// from Postgres, `/online` is a JSON 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_stats_come_from_postgres() {
    let site = Site::with(Stack::Real, |b| b.redis(common::dead_redis())).await;
    let pg = site.pg.clone().unwrap();
    let stored = PostgresRecord::new(pg)
        .raise(&Record::seen(
            53,
            120,
            chrono::DateTime::from_timestamp(1_764_185_364, 0).unwrap(),
        ))
        .await
        .unwrap();

    for i in 0..50 {
        site.visit(&format!("10.0.1.{i}")).await;
        site.visit_as("alice", "10.0.0.1").await;
    }
    assert!(site.whos.flush().await.is_err());
    assert!(site.whos.counters().flush_errors >= 1);

    let (status, body) = site.get_json("/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::to_value(stored).unwrap());
    assert_eq!(body["max_users_date"], "2025-11-26T19:29:24Z");

    let (status, body) = site.get_json("/online").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].is_string());
}

/// Neither store answers: a JSON 503, not a panic or an HTML page.
#[tokio::test]
async fn both_stores_down_is_a_json_503() {
    let site = Site::with(Stack::Real, |b| {
        b.redis(common::dead_redis())
            .postgres(common::dead_postgres())
    })
    .await;
    let (status, body) = site.get_json("/stats").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].is_string());
}

/// A cold cache is refilled from Postgres by `/stats`, and Postgres stays the
/// truth when Redis is flushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_refill_the_cache_from_postgres() {
    let site = Site::new(Stack::Real).await;
    let pg = site.pg.clone().unwrap();
    PostgresRecord::new(pg)
        .raise(&Record::seen(7, 9, chrono::Utc::now()))
        .await
        .unwrap();
    let key = format!("{{{}}}:record", site.prefix);
    let pool = axum_whos_online::redis_pool(&common::redis_url()).unwrap();
    let mut conn = pool.get().await.unwrap();
    let exists: bool = deadpool_redis::redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists);

    let (_, body) = site.get_json("/stats").await;
    assert_eq!(body["max_users"], 7);
    let cached: std::collections::HashMap<String, String> = deadpool_redis::redis::cmd("HGETALL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(cached["max_users"], "7");
    assert_eq!(cached["max_visitors"], "9");
    let ttl: i64 = deadpool_redis::redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 4 * 3600 - 60 && ttl <= 4 * 3600, "ttl {ttl}");

    // Data loss in Redis: the record comes back from Postgres.
    let _: () = deadpool_redis::redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (_, body) = site.get_json("/stats").await;
    assert_eq!(body["max_users"], 7);
}
