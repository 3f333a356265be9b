//! The view and its stream at their edges: a stream whose own names change, a
//! reset while presence is down, a peak seen after another instance's reset, odd
//! query strings, and a graceful shutdown held by a client that stopped reading.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use axum::body::Body;
use axum_whos_online::{
    Batch, Counts, Marked, MemoryPresence, PresenceStore, RecordReset, Snapshot, WhosOnline,
};
use common::{Site, Stack, request_from};
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// Reads SSE events off a body.
struct Events {
    body: Body,
    buffer: String,
}

impl Events {
    async fn next(&mut self) -> Option<(String, u64, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), 0, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().unwrap();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if event.is_empty() {
                    continue;
                }
                return Some((event, id, serde_json::from_str(&data).unwrap()));
            }
            let frame = self.body.frame().await?;
            if let Ok(bytes) = frame.unwrap().into_data() {
                self.buffer.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        }
    }

    async fn within(&mut self, ms: u64) -> Option<(String, u64, Value)> {
        tokio::time::timeout(Duration::from_millis(ms), self.next())
            .await
            .ok()
            .flatten()
    }
}

/// Through the fragment alone: subscribing does not count as a visitor.
async fn subscribe(site: &Site, uri: &str) -> Events {
    use tower::ServiceExt;
    let res = site
        .whos
        .router::<()>()
        .oneshot(request_from("10.9.9.9", uri))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    Events {
        body: res.into_body(),
        buffer: String::new(),
    }
}

/// With `?limit` below the number of listed names, a change of *which* names
/// are the `limit` most recent (same set of listed names, same counts) is
/// streamed, as `GET /online?limit=N` shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_a_limit_sees_its_own_names_change() {
    let site = Site::new(Stack::Memory).await;
    for name in ["a", "b", "c"] {
        site.visit_as(name, "10.0.0.1").await;
        site.whos.flush().await.unwrap();
        site.clock.advance_secs(100);
    }
    site.whos.refresh_now().await.unwrap();
    let mut events = subscribe(&site, "/online/events?limit=2").await;
    let (_, _, first) = events.next().await.unwrap();
    assert_eq!(first["users"], json!(["b", "c"]));
    events.next().await.unwrap(); // stats

    // `a` comes back: the two most recent are now a and c.
    site.visit_as("a", "10.0.0.1").await;
    site.settle().await;
    let (_, online) = site.get_json("/online?limit=2").await;
    assert_eq!(online["users"], json!(["a", "c"]), "/online shows it");
    let (_, _, change) = events
        .within(1000)
        .await
        .expect("the stream tells that a joined and b left its list");
    assert_eq!(change["users"], json!(["a", "c"]));
    assert_eq!(change["joins"], json!(["a"]));
    assert_eq!(change["leaves"], json!(["b"]));
}

/// A presence store that fails while `down` is set.
struct Flaky {
    inner: MemoryPresence,
    down: Arc<AtomicBool>,
}

fn down_err() -> axum_whos_online::Error {
    axum_whos_online::Error::Config("presence down (test)".into())
}

#[async_trait::async_trait]
impl PresenceStore for Flaky {
    async fn mark_seen(&self, at: i64, batch: &Batch) -> axum_whos_online::Result<Marked> {
        if self.down.load(SeqCst) {
            return Err(down_err());
        }
        self.inner.mark_seen(at, batch).await
    }
    async fn prune_and_count(&self, cutoff: i64) -> axum_whos_online::Result<Counts> {
        if self.down.load(SeqCst) {
            return Err(down_err());
        }
        self.inner.prune_and_count(cutoff).await
    }
    async fn snapshot(&self, cutoff: i64, limit: usize) -> axum_whos_online::Result<Snapshot> {
        if self.down.load(SeqCst) {
            return Err(down_err());
        }
        self.inner.snapshot(cutoff, limit).await
    }
}

/// A reset read while the presence store is down (the record-only path of the
/// refresh) never puts a record below the counts beside it into the view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_stays_above_the_counts_after_a_reset_while_presence_is_down() {
    let down = Arc::new(AtomicBool::new(false));
    let d = Arc::clone(&down);
    let site = Site::with(Stack::Memory, move |b| {
        b.presence_store(Flaky {
            inner: MemoryPresence::new(),
            down: d,
        })
    })
    .await;
    for (n, ip) in [("u1", "10.0.0.1"), ("u2", "10.0.0.2"), ("u3", "10.0.0.3")] {
        site.visit_as(n, ip).await;
    }
    site.settle().await;
    let v = site.whos.view();
    assert_eq!((v.user_count(), v.record().max_users), (3, 3));

    down.store(true, SeqCst); // Redis goes down; Postgres is up
    site.whos
        .reset_record(RecordReset::To {
            users: 0,
            visitors: 0,
        })
        .await
        .unwrap();
    let v = site.whos.view();
    let (_, stats) = site.get_json("/stats").await;
    let (_, online) = site.get_json("/online").await;
    assert!(
        v.record().max_users >= v.user_count(),
        "view: {} online beside most ever {} (/online {online}, /stats {stats})",
        v.user_count(),
        v.record().max_users,
    );
}

/// Query strings: every answer is 200/400 JSON, never a panic or non-JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_query_strings_are_json() {
    let site = Site::new(Stack::Memory).await;
    let queries = [
        "",
        "?",
        "?&",
        "?=",
        "?limit",
        "?limit=",
        "?limit=+5",
        "?limit=%35",
        "?limit=%FF",
        "?limit=%",
        "?%zz=1",
        "?limit=1;x",
        "?limit=99999999999999999999",
        "?limit=-1",
        "?limit=1&",
        "?&limit=1",
        "?LIMIT=1",
        "?limit=1%00",
    ];
    for path in ["/online", "/stats", "/online/events"] {
        for q in queries {
            let uri = format!("{path}{q}");
            let res = site.send(request_from("10.0.0.1", &uri)).await;
            let status = res.status();
            let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
            println!("{uri} -> {status} {ct}");
            assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{uri}: {status}"
            );
            if status == StatusCode::BAD_REQUEST {
                assert_eq!(ct, "application/json", "{uri}");
                let v = common::json(res).await;
                assert!(v["error"].is_string(), "{uri}");
            }
        }
    }
}

/// A presence store whose listed names all change at each read (256-byte names),
/// so each stream event is large.
struct Churn {
    n: AtomicU64,
}

#[async_trait::async_trait]
impl PresenceStore for Churn {
    async fn mark_seen(&self, _at: i64, _b: &Batch) -> axum_whos_online::Result<Marked> {
        Ok(Marked::default())
    }
    async fn prune_and_count(&self, _c: i64) -> axum_whos_online::Result<Counts> {
        Ok(Counts::default())
    }
    async fn snapshot(&self, cutoff: i64, limit: usize) -> axum_whos_online::Result<Snapshot> {
        let round = self.n.fetch_add(1, SeqCst);
        let recent: Vec<(String, i64)> = (0..limit.min(200))
            .map(|i| {
                (
                    format!("{round:08}-{i:04}-{}", "x".repeat(240)),
                    cutoff + 10,
                )
            })
            .collect();
        Ok(Snapshot {
            counts: Counts {
                users: recent.len() as u64 + round, // counts change too
                ..Counts::default()
            },
            recent,
            ..Snapshot::default()
        })
    }
}

/// A client that stops reading is never polled again once its socket buffers
/// are full, so `end_streams()` cannot end its stream and axum's graceful
/// shutdown alone would wait forever: `whos.graceful(server, grace)` stops
/// waiting `grace` after the streams were ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_bounds_a_shutdown_held_by_a_client_that_does_not_read() {
    shutdown_case(false).await
}

/// The same with a client that reads: the server finishes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_with_a_reading_client_finishes_at_once() {
    shutdown_case(true).await
}

async fn shutdown_case(reads: bool) {
    use tokio::io::AsyncWriteExt;
    let whos = WhosOnline::builder()
        .presence_store(Churn {
            n: AtomicU64::new(0),
        })
        .background_refresh(false)
        .background_ticker(false)
        .max_streams(1)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(tokio::sync::Notify::new());
    let server = {
        let (whos, stop) = (whos.clone(), Arc::clone(&stop));
        let app: axum::Router = whos.router();
        tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown({
                let whos = whos.clone();
                async move {
                    stop.notified().await;
                    whos.end_streams();
                }
            });
            let started = std::time::Instant::now();
            let served = whos.graceful(server, Duration::from_secs(1)).await;
            (served, started.elapsed())
        })
    };
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"GET /online/events?limit=200 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (mut rd, _wr) = sock.into_split();
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 65536];
        let mut total = 0usize;
        if reads {
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total += n;
            }
        } else {
            std::future::pending::<()>().await;
        }
        total
    });
    // Never read (unless `reads`): push ~30 MB of events at it.
    for _ in 0..200 {
        whos.refresh_now().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Its place is still held: a new stream is refused.
    let mut other = tokio::net::TcpStream::connect(addr).await.unwrap();
    other
        .write_all(b"GET /online/events HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 64];
    use tokio::io::AsyncReadExt;
    let n = other.read(&mut head).await.unwrap();
    let second = String::from_utf8_lossy(&head[..n]).to_string();
    drop(other);
    if !reads {
        // Its place is held while it is open: the cap of one refuses another.
        assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    }

    stop.notify_one();
    let (served, took) = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("graceful() returned within 5 s of the signal")
        .unwrap();
    reader.abort();
    served.unwrap();
    if reads {
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
}

/// A record store shared by two instances, that fails while `down` is set.
struct SharedRecord {
    inner: Arc<axum_whos_online::MemoryRecord>,
    down: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl axum_whos_online::RecordStore for SharedRecord {
    async fn load(&self) -> axum_whos_online::Result<axum_whos_online::Record> {
        if self.down.load(SeqCst) {
            return Err(down_err());
        }
        self.inner.load().await
    }
    async fn raise(
        &self,
        c: &axum_whos_online::Record,
    ) -> axum_whos_online::Result<axum_whos_online::Record> {
        if self.down.load(SeqCst) {
            return Err(down_err());
        }
        self.inner.raise(c).await
    }
    async fn reset(
        &self,
        to: &axum_whos_online::Record,
    ) -> axum_whos_online::Result<axum_whos_online::Record> {
        if self.down.load(SeqCst) {
            return Err(down_err());
        }
        self.inner.reset(to).await
    }
}

/// A peak seen by a refresh after another instance's reset, while a raise from
/// before the reset waits, replaces that raise (dropped as stale) and reaches
/// the store at the next tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peak_seen_by_a_refresh_after_a_reset_reaches_the_store() {
    use axum_whos_online::RecordStore;
    let store = Arc::new(axum_whos_online::MemoryRecord::new());
    let down = Arc::new(AtomicBool::new(false));
    let (s, d) = (Arc::clone(&store), Arc::clone(&down));
    // No record cache in front (a store of our own): reads see the shared
    // store, as instances sharing one Redis cache would.
    let a = Site::with(Stack::Memory, move |b| {
        b.record_store(SharedRecord { inner: s, down: d })
            .presence_store(Flaky {
                inner: MemoryPresence::new(),
                down: Arc::new(AtomicBool::new(false)),
            })
    })
    .await;
    let b = WhosOnline::builder()
        .record_store(SharedRecord {
            inner: Arc::clone(&store),
            down: Arc::clone(&down),
        })
        .background_ticker(false)
        .background_refresh(false)
        .build()
        .unwrap();
    for i in 1..=3 {
        a.visit_as(&format!("u{i}"), &format!("10.0.0.{i}")).await;
    }
    a.settle().await;
    assert_eq!(store.load().await.unwrap().max_users, 3);

    // Postgres down: a tick keeps a raise to 4 pending.
    down.store(true, SeqCst);
    a.visit_as("u4", "10.0.0.4").await;
    a.whos.flush().await.unwrap();
    assert!(a.whos.tick_now().await.unwrap().raise_pending);

    // Postgres back; another instance resets the record to 1.
    down.store(false, SeqCst);
    b.reset_record(RecordReset::To {
        users: 1,
        visitors: 0,
    })
    .await
    .unwrap();

    // A sees 5 online (after the reset): a real new peak of the new generation.
    a.visit_as("u5", "10.0.0.5").await;
    a.settle().await;
    assert_eq!(a.whos.view().user_count(), 5);
    assert_eq!(a.whos.view().record().max_users, 5, "the view shows it");

    // Everyone ages out but u1; the next tick sees 1 online.
    a.clock.advance_secs(1000);
    a.visit_as("u1", "10.0.0.1").await;
    a.whos.flush().await.unwrap();
    let rep = a.whos.tick_now().await.unwrap();
    assert!(!rep.raise_pending, "{rep:?}");
    let stored = store.load().await.unwrap();
    assert_eq!(
        stored.max_users, 5,
        "the peak of 5 seen after the reset reached the store"
    );
    assert_eq!(
        a.whos.counters().stale_raises_dropped,
        1,
        "the raise to 4 from before it did not"
    );
}
