//! `GET /online` and `GET /stats`: the JSON contract of DESIGN.md, served from
//! the view.

mod common;

use axum_whos_online::{
    Batch, Counts, Marked, PostgresRecord, PresenceStore, Record, RecordStore, RedisPresence,
    Snapshot,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

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
    site.settle().await;

    let (status, body) = site.get_json("/online").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"users": ["alice", "bob", "carol"], "user_count": 3,
               "visitor_count": 3, "window_secs": 900, "bot_count": 0, "bots": [],
               "as_of": "2025-11-24T16:00:00Z"})
    );
    // Visitor addresses never appear.
    assert!(!body.to_string().contains("192.0.2"));
}

async fn online_limit_keeps_counts_complete(stack: Stack) {
    let site = Site::new(stack).await;
    for name in ["dave", "carol", "bob", "alice"] {
        site.visit_as(name, "10.0.0.1").await;
        site.settle().await;
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
        site.settle().await;
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

/// `/online` and `/stats` read the view: no request reads or writes a store,
/// however many there are. Only a refresh reads (presence once, and the record).
async fn requests_cost_no_store_command(stack: Stack) {
    let calls = Arc::new(Calls::default());
    let counted = Arc::clone(&calls);
    let site = Site::with(stack, move |b| {
        let (presence, record): (Arc<dyn PresenceStore>, Arc<dyn RecordStore>) = match stack {
            Stack::Real => (
                Arc::new(RedisPresence::from_url(&common::redis_url(), &common::prefix()).unwrap()),
                Arc::new(PostgresRecord::new(common::dead_postgres())),
            ),
            Stack::Memory => (
                Arc::new(axum_whos_online::MemoryPresence::new()),
                Arc::new(axum_whos_online::MemoryRecord::new()),
            ),
        };
        b.presence_store(Counting {
            inner: presence,
            calls: Arc::clone(&counted),
        })
        .record_store(Counting {
            inner: record,
            calls: counted,
        })
    })
    .await;
    site.visit_as("alice", "10.0.0.1").await;
    site.settle().await;
    let before = calls.snapshot();
    assert_eq!(before.0, 1, "one refresh, one presence read");
    let router = site.whos.router::<()>();
    let get = |uri: &'static str| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let res = router.oneshot(request_from("10.0.0.9", uri)).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            common::json(res).await
        }
    };
    let first = get("/online").await;
    for _ in 0..50 {
        assert_eq!(get("/online").await, first);
        get("/online?limit=1").await;
        get("/stats").await;
    }
    assert_eq!(calls.snapshot(), before, "no store call for 150 requests");
    // A refresh reads again, and the new member shows.
    site.visit_as("bob", "10.0.0.2").await;
    site.settle().await;
    assert_eq!(get("/online").await["users"], json!(["alice", "bob"]));
    assert_eq!(calls.snapshot().0, 2);
}

/// Calls to the counted stores: presence reads, and record reads and writes.
#[derive(Default)]
struct Calls {
    snapshots: AtomicUsize,
    record: AtomicUsize,
}

impl Calls {
    fn snapshot(&self) -> (usize, usize) {
        (self.snapshots.load(SeqCst), self.record.load(SeqCst))
    }
}

/// A store that counts its calls.
struct Counting<S: ?Sized> {
    inner: Arc<S>,
    calls: Arc<Calls>,
}

#[async_trait::async_trait]
impl PresenceStore for Counting<dyn PresenceStore> {
    async fn mark_seen(&self, at: i64, batch: &Batch) -> axum_whos_online::Result<Marked> {
        self.inner.mark_seen(at, batch).await
    }
    async fn prune_and_count(&self, cutoff: i64) -> axum_whos_online::Result<Counts> {
        self.inner.prune_and_count(cutoff).await
    }
    async fn snapshot(&self, cutoff: i64, limit: usize) -> axum_whos_online::Result<Snapshot> {
        self.calls.snapshots.fetch_add(1, SeqCst);
        self.inner.snapshot(cutoff, limit).await
    }
}

#[async_trait::async_trait]
impl RecordStore for Counting<dyn RecordStore> {
    async fn load(&self) -> axum_whos_online::Result<Record> {
        self.calls.record.fetch_add(1, SeqCst);
        self.inner.load().await
    }
    async fn raise(&self, candidate: &Record) -> axum_whos_online::Result<Record> {
        self.calls.record.fetch_add(1, SeqCst);
        self.inner.raise(candidate).await
    }
    async fn reset(&self, to: &Record) -> axum_whos_online::Result<Record> {
        self.calls.record.fetch_add(1, SeqCst);
        self.inner.reset(to).await
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
    site.settle().await;
    site.clock.advance_secs(901);
    // No tick has run; the view refreshed now is about the window now.
    site.whos.refresh_now().await.unwrap();
    let (_, body) = site.get_json("/online").await;
    assert_eq!(
        body,
        json!({"users": [], "user_count": 0, "visitor_count": 0, "window_secs": 900,
               "bot_count": 0, "bots": [], "as_of": "2025-11-24T16:15:01Z"})
    );
}

async fn stats_empty_then_recorded(stack: Stack) {
    let site = Site::new(stack).await;
    let (status, body) = site.get_json("/stats").await;
    assert_eq!(status, StatusCode::OK);
    // Before the first refresh: zeros, and `as_of` null.
    assert_eq!(
        body,
        json!({"max_users": 0, "max_users_date": null, "max_visitors": 0,
               "max_visitors_date": null, "as_of": null})
    );

    site.clock.set_unix(1_764_185_364); // 2025-11-26T19:29:24Z
    site.visit_as("alice", "10.0.0.1").await;
    site.visit("10.0.0.2").await;
    site.visit("10.0.0.3").await;
    site.settle().await;
    site.whos.tick_now().await.unwrap();
    let (_, body) = site.get_json("/stats").await;
    // Three visitors: the two page views and the first `/stats` call (127.0.0.1),
    // which went through the layer like any request.
    assert_eq!(
        body,
        json!({"max_users": 1, "max_users_date": "2025-11-26T19:29:24Z",
               "max_visitors": 3, "max_visitors_date": "2025-11-26T19:29:24Z",
               "as_of": "2025-11-26T19:29:24Z"})
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

/// Answers carry a strong ETag that changes exactly when the body does, a
/// matching If-None-Match gets 304, and they may be cached for one refresh.
/// Errors are never cached.
async fn etags_and_304s_follow_the_body(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.settle().await;
    let get = |uri: &str, tag: Option<&str>| {
        let mut req = request_from("10.0.0.1", uri);
        if let Some(tag) = tag {
            req.headers_mut()
                .insert("if-none-match", tag.parse().unwrap());
        }
        site.send(req)
    };
    for uri in ["/online", "/stats", "/online?limit=1"] {
        let res = get(uri, None).await;
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        assert_eq!(res.headers()["content-type"], "application/json", "{uri}");
        assert_eq!(res.headers()["cache-control"], "max-age=1", "{uri}");
        let tag = res.headers()["etag"].to_str().unwrap().to_owned();
        assert!(tag.starts_with('"') && tag.len() == 34, "{tag}");
        // The same body, the same tag; a matching If-None-Match: 304, no body.
        let again = get(uri, None).await;
        assert_eq!(again.headers()["etag"], tag.as_str(), "{uri}");
        let not_modified = get(uri, Some(&tag)).await;
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED, "{uri}");
        assert_eq!(not_modified.headers()["etag"], tag.as_str());
        assert_eq!(not_modified.headers()["cache-control"], "max-age=1");
        let body = http_body_util::BodyExt::collect(not_modified.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(body.is_empty());
        assert_eq!(
            get(uri, Some("\"other\", W/")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            get(uri, Some(&format!("\"x\", W/{tag}"))).await.status(),
            StatusCode::NOT_MODIFIED
        );
    }
    // `/online` and `/stats` differ, and so do their tags.
    let online_tag = get("/online", None).await.headers()["etag"].clone();
    let stats_tag = get("/stats", None).await.headers()["etag"].clone();
    assert_ne!(online_tag, stats_tag);

    // A new member: a new body, a new tag; the old tag gets the body.
    site.visit_as("bob", "10.0.0.2").await;
    site.settle().await;
    let res = get("/online", Some(online_tag.to_str().unwrap())).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_ne!(res.headers()["etag"], online_tag);
    assert_eq!(common::json(res).await["users"], json!(["alice", "bob"]));

    let res = get("/online?limit=x", None).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.headers().get("etag").is_none());
}

/// `?limit` above what the view lists returns what it lists.
async fn a_limit_above_the_view_returns_what_it_holds(stack: Stack) {
    let site = Site::with(stack, |b| b.view_names(3)).await;
    for name in ["a", "b", "c", "d", "e"] {
        site.visit_as(name, "10.0.0.1").await;
        site.whos.flush().await.unwrap();
        site.clock.advance_secs(1);
    }
    site.whos.refresh_now().await.unwrap();
    let (status, body) = site.get_json("/online?limit=200").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["users"], json!(["c", "d", "e"]));
    assert_eq!(body["user_count"], 5);
    assert_eq!(site.whos.view().users(), ["c", "d", "e"]);
}

on_both_stacks!(
    online_shape_and_sorting,
    online_limit_keeps_counts_complete,
    the_limit_ceiling_is_configurable,
    requests_cost_no_store_command,
    a_limit_above_the_view_returns_what_it_holds,
    bad_queries_are_json_400,
    stats_refuses_any_query_parameter,
    counts_follow_the_window_before_any_prune,
    stats_empty_then_recorded,
    other_methods_get_json_405,
    etags_and_304s_follow_the_body,
);

/// Redis unreachable: requests through the layer still succeed, `/stats` answers
/// from Postgres (read by the view's refresh), `/online` with the empty view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_stats_come_from_postgres() {
    let site = Site::with(Stack::Real, |b| b.redis(common::dead_redis())).await;
    let pg = site.pg.clone().unwrap();
    let stored = PostgresRecord::new(pg)
        .with_site(&site.prefix)
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
    assert!(site.whos.refresh_now().await.is_err());
    assert_eq!(site.whos.counters().view_refresh_errors, 1);

    let (status, body) = site.get_json("/stats").await;
    assert_eq!(status, StatusCode::OK);
    let mut expected = serde_json::to_value(stored).unwrap();
    expected["as_of"] = serde_json::Value::Null;
    assert_eq!(body, expected);
    assert_eq!(body["max_users_date"], "2025-11-26T19:29:24Z");

    // Never read: zeros, and `as_of` null says so.
    let (status, body) = site.get_json("/online").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["user_count"].as_u64(), body["as_of"].as_null()),
        (Some(0), Some(()))
    );
}

/// Neither store answers: the empty view, never an error or a panic.
#[tokio::test]
async fn both_stores_down_serve_the_empty_view() {
    let site = Site::with(Stack::Real, |b| {
        b.redis(common::dead_redis())
            .postgres(common::dead_postgres())
    })
    .await;
    assert!(site.whos.refresh_now().await.is_err());
    for uri in ["/stats", "/online"] {
        let (status, body) = site.get_json(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(body["as_of"].is_null(), "{uri}: {body}");
    }
}

/// A cold cache is refilled from Postgres by the view's refresh, and Postgres
/// stays the truth when Redis is flushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_refill_the_cache_from_postgres() {
    let site = Site::new(Stack::Real).await;
    let pg = site.pg.clone().unwrap();
    PostgresRecord::new(pg)
        .with_site(&site.prefix)
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

    site.whos.refresh_now().await.unwrap();
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
    site.whos.refresh_now().await.unwrap();
    let (_, body) = site.get_json("/stats").await;
    assert_eq!(body["max_users"], 7);
    let exists: bool = deadpool_redis::redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists, "refilled");
}
