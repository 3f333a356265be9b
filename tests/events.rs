//! `GET /online/events`: the view's changes as server-sent events, read frame
//! by frame from the response body.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use axum::body::Body;
use axum_whos_online::{
    Batch, Counts, Marked, MemoryPresence, PresenceStore, RedisPresence, Snapshot, User,
    identify_now,
};
use common::{Site, Stack, request_from};
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    event: String,
    id: u64,
    data: Value,
}

/// Reads events off a response body.
struct Events {
    body: Body,
    buffer: String,
}

impl Events {
    fn new(res: axum::response::Response) -> Self {
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Self {
            body: res.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped); `None` when the stream
    /// ended. Panics after five seconds without one.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if event.is_empty() {
                    continue; // a comment
                }
                return Some(Sse {
                    event,
                    id: id.expect("every event has an id"),
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame())
                .await
                .expect("an event within 5 s");
            match frame {
                None => return None,
                Some(frame) => {
                    if let Ok(bytes) = frame.unwrap().into_data() {
                        self.buffer.push_str(std::str::from_utf8(&bytes).unwrap());
                    }
                }
            }
        }
    }

    /// Whether an event is ready within 200 ms (for "nothing was sent").
    async fn quiet(&mut self) -> bool {
        tokio::time::timeout(Duration::from_millis(200), self.next())
            .await
            .is_err()
    }
}

async fn subscribe(site: &Site, uri: &str) -> Events {
    Events::new(site.send(request_from("10.9.9.9", uri)).await)
}

/// Users by the `x-user` header, hidden with `x-hidden`.
fn with_hidden(b: axum_whos_online::Builder) -> axum_whos_online::Builder {
    b.identify_users(identify_now(|req| {
        req.headers.get("x-user").map(|v| {
            User::new(v.to_str().unwrap()).with_hidden(req.headers.contains_key("x-hidden"))
        })
    }))
}

async fn visit_hidden(site: &Site, name: &str, ip: &str) {
    let mut req = request_from(ip, "/");
    req.headers_mut().insert("x-user", name.parse().unwrap());
    req.headers_mut().insert("x-hidden", "1".parse().unwrap());
    assert_eq!(site.send(req).await.status(), 200);
}

/// On connect: the `/online` body and the `/stats` body. Then an `online` event
/// for each change of the counts or names, with joins and leaves (a hidden user
/// never among them), and a `stats` event when the record changes. Ids increase.
async fn the_stream_tells_joins_and_leaves(stack: Stack) {
    let site = Site::with(stack, with_hidden).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.settle().await;
    let (_, online) = site.get_json("/online").await;
    let (_, stats) = site.get_json("/stats").await;
    let mut events = subscribe(&site, "/online/events").await;

    let first = events.next().await.unwrap();
    assert_eq!(first.event, "online");
    assert_eq!(first.data, online, "the first event is the /online body");
    let second = events.next().await.unwrap();
    assert_eq!(second.event, "stats");
    assert_eq!(second.data, stats);
    assert!(second.id > first.id);

    // Bob arrives, and ghost, hidden: bob joins; ghost only counts.
    site.visit_as("bob", "10.0.0.2").await;
    visit_hidden(&site, "ghost", "10.0.0.3").await;
    site.settle().await;
    let change = events.next().await.unwrap();
    assert_eq!(change.event, "online");
    assert!(change.id > second.id);
    assert_eq!(change.data["users"], json!(["alice", "bob"]));
    assert_eq!(change.data["joins"], json!(["bob"]));
    assert_eq!(change.data["leaves"], json!([]));
    assert_eq!(change.data["user_count"], 3);
    // The record rose with them: a stats event follows.
    let rose = events.next().await.unwrap();
    assert_eq!(rose.event, "stats");
    assert_eq!(rose.data["max_users"], 3);
    assert!(rose.id > change.id);
    assert!(!rose.data.to_string().contains("ghost"));

    // A refresh that changes nothing sends nothing.
    site.whos.refresh_now().await.unwrap();
    assert!(events.quiet().await);

    // Alice and ghost age out; bob comes back: alice leaves, ghost never shows.
    site.clock.advance_secs(600);
    site.visit_as("bob", "10.0.0.2").await;
    site.clock.advance_secs(301);
    site.settle().await;
    let change = events.next().await.unwrap();
    assert_eq!(change.data["users"], json!(["bob"]));
    assert_eq!(change.data["joins"], json!([]));
    assert_eq!(change.data["leaves"], json!(["alice"]));
    assert_eq!(change.data["user_count"], 1);
    assert!(!change.data.to_string().contains("ghost"));
    assert!(events.quiet().await, "the record did not change");
}

/// `?limit` applies to every `online` event; a bad one is a JSON 400 before
/// any stream starts.
async fn the_limit_applies_and_bad_ones_are_400(stack: Stack) {
    let site = Site::new(stack).await;
    for name in ["a", "b", "c"] {
        site.visit_as(name, "10.0.0.1").await;
        site.whos.flush().await.unwrap();
        site.clock.advance_secs(1);
    }
    site.whos.refresh_now().await.unwrap();
    let mut events = subscribe(&site, "/online/events?limit=2").await;
    assert_eq!(
        events.next().await.unwrap().data["users"],
        json!(["b", "c"])
    );
    for q in [
        "limit=0",
        "limit=x",
        "limit=201",
        "other=1",
        "limit=1&limit=2",
    ] {
        let res = site
            .send(request_from("10.0.0.1", &format!("/online/events?{q}")))
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(res.headers()["content-type"], "application/json", "{q}");
    }
}

/// Beyond the cap on open streams: a JSON 503 with Retry-After; a closed
/// stream frees its place.
async fn streams_beyond_the_cap_are_503(stack: Stack) {
    let site = Site::with(stack, |b| b.max_streams(2)).await;
    let one = subscribe(&site, "/online/events").await;
    let _two = subscribe(&site, "/online/events").await;
    let res = site.send(request_from("10.0.0.1", "/online/events")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "10");
    assert!(common::json(res).await["error"].is_string());
    assert_eq!(site.whos.counters().streams_refused, 1);
    drop(one);
    let _three = subscribe(&site, "/online/events").await;
    assert_eq!(site.whos.counters().streams_opened, 3);
}

/// Shutdown ends every stream cleanly (the body ends), and later ones at once.
async fn shutdown_ends_the_streams(stack: Stack) {
    let site = Site::new(stack).await;
    let mut events = subscribe(&site, "/online/events").await;
    assert_eq!(events.next().await.unwrap().event, "online");
    assert_eq!(events.next().await.unwrap().event, "stats");
    site.whos.shutdown().await.unwrap();
    assert_eq!(events.next().await, None);
}

/// A subscriber that does not read holds up nobody: the others get every
/// change, and when it reads again it gets the latest view only, counted.
async fn a_slow_subscriber_gets_the_latest_only(stack: Stack) {
    let site = Site::new(stack).await;
    let mut slow = subscribe(&site, "/online/events").await;
    let mut fast = subscribe(&site, "/online/events").await;
    for _ in 0..2 {
        fast.next().await.unwrap();
    }
    for i in 0..5 {
        site.visit_as(&format!("u{i}"), "10.0.0.1").await;
        site.settle().await;
        let change = fast.next().await.unwrap();
        assert_eq!(change.data["user_count"], i + 1);
        assert_eq!(fast.next().await.unwrap().event, "stats");
    }
    for _ in 0..2 {
        slow.next().await.unwrap();
    }
    let latest = slow.next().await.unwrap();
    assert_eq!(latest.data["user_count"], 5);
    assert_eq!(
        latest.data["joins"],
        json!(["u0", "u1", "u2", "u3", "u4"]),
        "joins since the last event it got"
    );
    assert!(site.whos.counters().stream_views_skipped >= 4);
}

/// A presence store that counts its reads.
struct CountingReads {
    inner: Arc<dyn PresenceStore>,
    reads: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl PresenceStore for CountingReads {
    async fn mark_seen(&self, at: i64, batch: &Batch) -> axum_whos_online::Result<Marked> {
        self.inner.mark_seen(at, batch).await
    }
    async fn prune_and_count(&self, cutoff: i64) -> axum_whos_online::Result<Counts> {
        self.inner.prune_and_count(cutoff).await
    }
    async fn snapshot(&self, cutoff: i64, limit: usize) -> axum_whos_online::Result<Snapshot> {
        self.reads.fetch_add(1, SeqCst);
        self.inner.snapshot(cutoff, limit).await
    }
}

/// A thousand subscribers share the one refresh: the store is read once per
/// refresh, however many are listening, and every one of them gets each change.
async fn one_refresh_serves_every_subscriber(stack: Stack) {
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&reads);
    let site = Site::with(stack, move |b| {
        let inner: Arc<dyn PresenceStore> = match stack {
            Stack::Real => {
                Arc::new(RedisPresence::from_url(&common::redis_url(), &common::prefix()).unwrap())
            }
            Stack::Memory => Arc::new(MemoryPresence::new()),
        };
        b.presence_store(CountingReads {
            inner,
            reads: counted,
        })
        .max_streams(1_000)
    })
    .await;
    let mut subscribers = Vec::new();
    for _ in 0..1_000 {
        let mut events = subscribe(&site, "/online/events").await;
        events.next().await.unwrap();
        events.next().await.unwrap();
        subscribers.push(events);
    }
    assert_eq!(reads.load(SeqCst), 0, "subscribing reads nothing");
    for i in 0..3 {
        site.visit_as(&format!("u{i}"), "10.0.0.1").await;
        site.settle().await;
    }
    assert_eq!(reads.load(SeqCst), 3, "one read per refresh");
    for events in &mut subscribers {
        let latest = events.next().await.unwrap();
        assert_eq!(latest.event, "online");
        assert!(latest.data["user_count"].as_u64().unwrap() >= 1);
    }
    let streams = site.whos.counters().streams_opened;
    assert_eq!(streams, 1_000);
}

on_both_stacks!(
    the_stream_tells_joins_and_leaves,
    the_limit_applies_and_bad_ones_are_400,
    streams_beyond_the_cap_are_503,
    shutdown_ends_the_streams,
    a_slow_subscriber_gets_the_latest_only,
    one_refresh_serves_every_subscriber,
);
