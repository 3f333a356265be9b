//! The event-stream benchmark: many `GET /online/events` subscribers on one
//! `bench_server --mode footer`, for `bench/streams.sh`.
//!
//! ```text
//! stream_bench --server 127.0.0.1:3901 --pid PID --redis redis://127.0.0.1:6398 \
//!     --subscribers 10000 --changes 20
//! ```
//!
//! First counts the Redis commands the server sends in `--hold` seconds with no
//! subscriber (`INFO commandstats`; the server's own refresh, ticks and lease).
//! Then opens the subscribers (each from its own connection), waits until every one
//! has its first events, then makes `--changes` count changes: one request from
//! a new visitor each (`X-Forwarded-For`, which `bench_server` trusts), waiting
//! until every subscriber has seen it. For each change it takes the time from
//! the request to the first and to the last subscriber's event; it also reads
//! the server's resident memory before and after subscribing (`/proc/PID/status`),
//! and counts the Redis commands again over `--hold` seconds with every
//! subscriber connected.
//! Prints one `RESULT` line for the script.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;

struct Args {
    server: SocketAddr,
    pid: u32,
    redis: String,
    hold: u64,
    subscribers: usize,
    changes: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        server: SocketAddr::from(([127, 0, 0, 1], 3901)),
        pid: 0,
        redis: "redis://127.0.0.1:6379".to_owned(),
        hold: 10,
        subscribers: 10_000,
        changes: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => args.server = value.parse().expect("--server ADDR"),
            "--pid" => args.pid = value.parse().expect("--pid PID"),
            "--redis" => args.redis = value,
            "--hold" => args.hold = value.parse().expect("--hold SECS"),
            "--subscribers" => args.subscribers = value.parse().expect("--subscribers N"),
            "--changes" => args.changes = value.parse().expect("--changes N"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Commands Redis has run so far, `INFO` itself excluded.
async fn redis_calls(url: &str) -> u64 {
    let client = deadpool_redis::redis::Client::open(url).expect("--redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let info: String = deadpool_redis::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// Redis commands per second over `secs` seconds.
async fn redis_rate(url: &str, secs: u64) -> f64 {
    let before = redis_calls(url).await;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = redis_calls(url).await;
    // Our own two INFO calls are not counted; the connections' HELLO/CLIENT
    // commands, if any, are a handful.
    (after - before) as f64 / secs as f64
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// What the subscribers saw, shared.
struct Seen {
    /// Subscribers that have their first events.
    ready: AtomicUsize,
    /// The visitor count of the first event.
    base: AtomicU64,
    /// The highest visitor count each change is waited for, and how many
    /// subscribers have seen it.
    target: AtomicU64,
    reached: AtomicUsize,
    /// Nanoseconds since `start` of the first and last arrival of the target.
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    start: Instant,
    all: Notify,
    total: usize,
}

impl Seen {
    fn arrived(&self) {
        let ns = self.start.elapsed().as_nanos() as u64;
        let _ = self.first_ns.compare_exchange(0, ns, Relaxed, Relaxed);
        self.last_ns.fetch_max(ns, Relaxed);
        if self.reached.fetch_add(1, Relaxed) + 1 == self.total {
            self.all.notify_one();
        }
    }
}

async fn subscribe(server: SocketAddr, seen: Arc<Seen>) {
    let mut stream = loop {
        match TcpStream::connect(server).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let request = format!(
        "GET /online/events?limit=5 HTTP/1.1\r\nHost: {server}\r\nUser-Agent: stream-bench\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut events = 0usize;
    let mut last_count = 0u64;
    while let Ok(Some(line)) = lines.next_line().await {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        events += 1;
        if events == 2 {
            seen.ready.fetch_add(1, Relaxed);
        }
        // Only the `online` events carry visitor_count; a cheap find will do.
        if let Some(at) = data.find("\"visitor_count\":") {
            let rest = &data[at + 16..];
            let n: u64 = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            if events == 1 {
                seen.base.store(n, Relaxed);
            }
            let target = seen.target.load(Relaxed);
            if n != last_count && n == target && events > 2 {
                seen.arrived();
            }
            last_count = n;
        }
    }
}

/// One request from a new visitor (rightmost `X-Forwarded-For`).
async fn visit(server: SocketAddr, i: usize) {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {server}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120\r\n\
         X-Forwarded-For: 198.51.{}.{}\r\nConnection: close\r\n\r\n",
        i / 250,
        i % 250 + 1
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(_)) = lines.next_line().await {}
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let idle_rate = redis_rate(&args.redis, args.hold).await;
    let rss_before = rss_kib(args.pid);
    let seen = Arc::new(Seen {
        ready: AtomicUsize::new(0),
        base: AtomicU64::new(0),
        target: AtomicU64::new(u64::MAX),
        reached: AtomicUsize::new(0),
        first_ns: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        start: Instant::now(),
        all: Notify::new(),
        total: args.subscribers,
    });
    for _ in 0..args.subscribers {
        tokio::spawn(subscribe(args.server, Arc::clone(&seen)));
    }
    let opened = Instant::now();
    while seen.ready.load(Relaxed) < args.subscribers {
        assert!(
            opened.elapsed() < Duration::from_secs(120),
            "only {} of {} subscribers connected",
            seen.ready.load(Relaxed),
            args.subscribers
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_secs = opened.elapsed().as_secs_f64();
    let busy_rate = redis_rate(&args.redis, args.hold).await;
    let rss_after = rss_kib(args.pid);

    let (mut to_first, mut to_last) = (Vec::new(), Vec::new());
    let base = seen.base.load(Relaxed);
    for i in 0..args.changes {
        // Each change: a new visitor, one more than the count so far.
        let target = base + i as u64 + 1;
        seen.reached.store(0, Relaxed);
        seen.first_ns.store(0, Relaxed);
        seen.last_ns.store(0, Relaxed);
        seen.target.store(target, Relaxed);
        let sent_ns = seen.start.elapsed().as_nanos() as u64;
        visit(args.server, 1_000 + i).await;
        let waited = tokio::time::timeout(Duration::from_secs(30), seen.all.notified()).await;
        if waited.is_err() {
            eprintln!(
                "change {i}: only {} of {} subscribers saw visitor_count {target}",
                seen.reached.load(Relaxed),
                args.subscribers
            );
            break;
        }
        let first = seen.first_ns.load(Relaxed).saturating_sub(sent_ns) as f64 / 1e6;
        let last = seen.last_ns.load(Relaxed).saturating_sub(sent_ns) as f64 / 1e6;
        to_first.push(first);
        to_last.push(last);
        // Let the next change fall in another refresh.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let spread: Vec<f64> = {
        let mut s: Vec<f64> = to_first.iter().zip(&to_last).map(|(f, l)| l - f).collect();
        s.sort_by(f64::total_cmp);
        s
    };
    to_first.sort_by(f64::total_cmp);
    to_last.sort_by(f64::total_cmp);
    println!(
        "RESULT subscribers={} connect_secs={connect_secs:.1} redis_per_sec_idle={idle_rate:.2} \
         redis_per_sec_subscribed={busy_rate:.2} rss_before_kib={rss_before} \
         rss_after_kib={rss_after} changes={} first_p50_ms={:.1} last_p50_ms={:.1} last_p99_ms={:.1} \
         fanout_p50_ms={:.1} fanout_p99_ms={:.1}",
        args.subscribers,
        to_last.len(),
        percentile(&to_first, 0.5),
        percentile(&to_last, 0.5),
        percentile(&to_last, 0.99),
        percentile(&spread, 0.5),
        percentile(&spread, 0.99),
    );
}
