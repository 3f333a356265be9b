//! Chaos: invariants under random faults (issue 11, item 6).
//!
//! Three instances of one site (one prefix, a private `redis-server`, one fresh
//! Postgres database reached through a TCP proxy) take load from a known universe
//! of users, visitors and bots that grows in waves, while a driver injects faults
//! at random from a seed: Redis killed and started again empty, `FLUSHALL`, the
//! day's visitor secret deleted, the record cache deleted, `CLIENT PAUSE`, and
//! Postgres cut (the proxy) and restored. A checker watches all along:
//!
//! * every host request answers 200;
//! * no count (`online()`, or a `tick_now()` report) exceeds the true number of
//!   distinct members introduced so far (nobody leaves the 15-minute window
//!   during a run, so that is the truth);
//! * `/stats` answers 200 or a 503 JSON error; its record never exceeds the true
//!   peak and, per instance, never decreases;
//! * the record in Postgres (read directly, not through the proxy) never
//!   decreases and never exceeds the true peak.
//!
//! Once the faults stop and every store is back: after the de-dup resolution,
//! one more round of requests, one flush per instance and one tick, every
//! instance counts exactly the truth, and the record in Postgres and in `/stats`
//! is the true peak.
//!
//! Violations are collected, not raised at once, so a run shows every invariant
//! that broke; the test fails at the end with the seed, the figures and the first
//! occurrence of each.
//!
//! Environment:
//! * `CHAOS_SEED`: the seed (printed at start; from the time when unset). It fixes
//!   the sequence of faults, their spacing and lengths, the universe's order and
//!   the instance each request goes to; the machine's timing is not replayed.
//! * `CHAOS_SECS`: seconds of faults (default 8, the short run of `cargo test`
//!   in `.ci/run`; longer runs e.g. `CHAOS_SECS=120`).
//! * `CHAOS_IPV6_PER_ADDRESS=1`: the instances count IPv6 visitors per address
//!   (`ipv6_prefix(128)`) instead of by /64, and so does the truth.
//! * `CHAOS_VISITOR_SECRET=1`: the instances share a configured visitor secret,
//!   so no day key lives in Redis (the `del-secret` fault then deletes nothing
//!   the instances use); the default is the random day key kept in Redis.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum_whos_online::{WhosOnline, redis_pool};
use common::proxy::Proxy;
use common::servers::RedisServer;
use deadpool_redis::redis;
use http::HeaderValue;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tower::ServiceExt;

const INSTANCES: usize = 3;
const USERS: usize = 30;
const BOTS: usize = 8;
/// The universe is introduced in this many waves, over the first 70 % of the run.
const WAVES: usize = 5;
const RESOLUTION: Duration = Duration::from_secs(1);
const BOT_AGENT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// A small, seeded generator (splitmix64): no dependency, the same numbers everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Milliseconds from `lo` to `hi`, both included.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }

    /// An independent stream, so one task's draws do not shift another's.
    fn fork(&mut self) -> Rng {
        Rng(self.next())
    }
}

/// The number of distinct visitors among `ips`: an IPv4 address is one visitor
/// (/32), an IPv6 one is its /64 (one household or device behind privacy
/// addresses), and an IPv4-mapped IPv6 address is its IPv4 address.
///
/// With `ipv6_prefix(128)` (`CHAOS_IPV6_PER_ADDRESS=1`) each IPv6 address
/// counts on its own ([`visitors_per_address`]).
fn true_visitors(ips: &[IpAddr]) -> usize {
    ips.iter()
        .map(|ip| match ip.to_canonical() {
            IpAddr::V4(v4) => (4, u128::from(v4.to_bits())),
            IpAddr::V6(v6) => (6, v6.to_bits() >> 64),
        })
        .collect::<HashSet<_>>()
        .len()
}

/// The number of distinct visitor addresses among `ips` (IPv4-mapped folded).
fn visitors_per_address(ips: &[IpAddr]) -> usize {
    ips.iter()
        .map(|ip| ip.to_canonical())
        .collect::<HashSet<_>>()
        .len()
}

/// 40 IPv4 visitors; 20 IPv6 ones in ten /64s of one to three addresses each;
/// and one IPv4-mapped IPv6 address of an IPv4 visitor (the same client).
fn visitor_universe() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = (0..40u8)
        .map(|i| {
            IpAddr::V4(if i < 20 {
                Ipv4Addr::new(198, 51, 100, 10 + i)
            } else {
                Ipv4Addr::new(203, 0, 113, i)
            })
        })
        .collect();
    for (net, size) in [3u16, 2, 3, 2, 1, 1, 2, 3, 1, 2].into_iter().enumerate() {
        for host in 0..size {
            v.push(IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0xa,
                net as u16,
                0x1000 * (host + 1),
                0x22,
                0x33,
                0x44 + host,
            )));
        }
    }
    v.push("::ffff:198.51.100.17".parse().unwrap());
    v
}

/// Who may make requests, and how many of each kind have been introduced: a
/// member is counted in before its first request is sent, so a count read before
/// the truth is never above it unless the library over-counts.
struct Universe {
    users: Vec<String>,
    visitors: Vec<IpAddr>,
    bots: Vec<IpAddr>,
    /// `true_visitors(&visitors[..k])` (or per address) for every `k`.
    visitor_truth: Vec<u64>,
    /// `visitors_per_address(&visitors[..k])`, for the messages.
    visitor_addresses: Vec<u64>,
    n_users: AtomicUsize,
    n_visitors: AtomicUsize,
    n_bots: AtomicUsize,
}

#[derive(Debug, Clone, Copy)]
struct Truth {
    users: u64,
    visitors: u64,
    /// Distinct visitor addresses (what the code before /64 grouping counts).
    addresses: u64,
    bots: u64,
}

impl Universe {
    fn new(rng: &mut Rng, per_address: bool) -> Self {
        let users = (0..USERS).map(|i| format!("user{i:02}")).collect();
        let mut visitors = visitor_universe();
        // Groups of one /64 land in different waves.
        rng.shuffle(&mut visitors);
        // Bots are keyed by address like visitors; IPv4 ones, so that their
        // truth does not depend on how IPv6 addresses are grouped.
        let bots = (0..BOTS)
            .map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + i as u8)))
            .collect();
        let prefix_counts = |f: fn(&[IpAddr]) -> usize| -> Vec<u64> {
            (0..=visitors.len())
                .map(|k| f(&visitors[..k]) as u64)
                .collect()
        };
        let visitor_addresses = prefix_counts(visitors_per_address);
        let visitor_truth = if per_address {
            visitor_addresses.clone()
        } else {
            prefix_counts(true_visitors)
        };
        Self {
            users,
            visitors,
            bots,
            visitor_truth,
            visitor_addresses,
            n_users: AtomicUsize::new(0),
            n_visitors: AtomicUsize::new(0),
            n_bots: AtomicUsize::new(0),
        }
    }

    /// Introduces the first `waves` of `WAVES` waves of every kind.
    fn introduce(&self, waves: usize) {
        let upto = |len: usize| len * waves.min(WAVES) / WAVES;
        self.n_users.fetch_max(upto(self.users.len()), SeqCst);
        self.n_visitors.fetch_max(upto(self.visitors.len()), SeqCst);
        self.n_bots.fetch_max(upto(self.bots.len()), SeqCst);
    }

    fn truth(&self) -> Truth {
        let v = self.n_visitors.load(SeqCst);
        Truth {
            users: self.n_users.load(SeqCst) as u64,
            visitors: self.visitor_truth[v],
            addresses: self.visitor_addresses[v],
            bots: self.n_bots.load(SeqCst) as u64,
        }
    }

    fn full(&self) -> Truth {
        Truth {
            users: self.users.len() as u64,
            visitors: *self.visitor_truth.last().unwrap(),
            addresses: *self.visitor_addresses.last().unwrap(),
            bots: self.bots.len() as u64,
        }
    }
}

/// Kinds of fault, in the order of the driver's draw.
const FAULTS: [&str; 6] = [
    "redis-restart",
    "flushall",
    "del-secret",
    "del-record",
    "client-pause",
    "pg-cut",
];

/// What every task shares: the universe, the figures and what broke.
struct Chaos {
    seed: u64,
    start: Instant,
    universe: Universe,
    /// Invariant -> (times broken, first occurrence).
    broken: Mutex<BTreeMap<String, (u64, String)>>,
    /// (seconds since start, what) of every fault injected and every restore.
    fault_log: Mutex<Vec<(f64, String)>>,
    faults: [AtomicU64; FAULTS.len()],
    driver_errors: AtomicU64,
    requests: AtomicU64,
    failed: AtomicU64,
    checks: AtomicU64,
    /// Largest count seen above the truth: users, visitors, bots; and visitors
    /// above the number of distinct addresses.
    over: [AtomicU64; 4],
    /// Largest record seen above the true peak: users, visitors.
    record_over: [AtomicU64; 2],
    stop_load: AtomicBool,
    stop_checker: AtomicBool,
}

impl Chaos {
    fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn log_fault(&self, what: String) {
        let t = self.secs();
        self.fault_log.lock().unwrap().push((t, what));
    }

    /// The last few faults, for a message.
    fn recent_faults(&self) -> String {
        let log = self.fault_log.lock().unwrap();
        let recent: Vec<String> = log
            .iter()
            .rev()
            .take(4)
            .rev()
            .map(|(t, w)| format!("{w}@{t:.2}s"))
            .collect();
        if recent.is_empty() {
            "none yet".into()
        } else {
            recent.join(", ")
        }
    }

    /// Records that `invariant` broke; the first occurrence is printed at once.
    fn broke(&self, invariant: &str, detail: String) {
        let detail = format!(
            "{detail} (t={:.2}s; recent faults: {})",
            self.secs(),
            self.recent_faults()
        );
        let mut broken = self.broken.lock().unwrap();
        let entry = broken
            .entry(invariant.to_owned())
            .or_insert_with(|| (0, String::new()));
        if entry.0 == 0 {
            eprintln!("chaos: seed {}: BROKEN {invariant}: {detail}", self.seed);
            entry.1 = detail;
        }
        entry.0 += 1;
    }

    /// Counts read before `truth` may not exceed it.
    fn check_counts(&self, source: &str, instance: usize, counts: [u64; 3], truth: Truth) {
        self.checks.fetch_add(1, SeqCst);
        let truths = [truth.users, truth.visitors, truth.bots];
        for (k, kind) in ["users", "visitors", "bots"].into_iter().enumerate() {
            let over = counts[k].saturating_sub(truths[k]);
            self.over[k].fetch_max(over, SeqCst);
            if over > 0 {
                let extra = if k == 1 {
                    format!(" ({} distinct addresses)", truth.addresses)
                } else {
                    String::new()
                };
                self.broke(
                    &format!("{kind} count <= truth"),
                    format!(
                        "{source} on instance {instance}: {kind} {} > true {}{extra}",
                        counts[k], truths[k]
                    ),
                );
            }
        }
        self.over[3].fetch_max(counts[1].saturating_sub(truth.addresses), SeqCst);
    }

    /// A record read before `truth` may not exceed the true peak, which is the
    /// truth itself: the universe only grows and nobody leaves the window.
    fn check_record(&self, source: &str, at: &str, record: (u64, u64), truth: Truth) {
        self.checks.fetch_add(1, SeqCst);
        let over = [
            record.0.saturating_sub(truth.users),
            record.1.saturating_sub(truth.visitors),
        ];
        self.record_over[0].fetch_max(over[0], SeqCst);
        self.record_over[1].fetch_max(over[1], SeqCst);
        if over != [0, 0] {
            self.broke(
                &format!("{source} record <= true peak"),
                format!(
                    "{source}{at}: max_users {} / max_visitors {} above the true peak {} / {} \
                     ({} distinct addresses)",
                    record.0, record.1, truth.users, truth.visitors, truth.addresses
                ),
            );
        }
    }

    /// A record may never go below one read earlier from the same source.
    fn check_not_lower(&self, source: &str, at: &str, last: &mut (u64, u64), now: (u64, u64)) {
        if now.0 < last.0 || now.1 < last.1 {
            self.broke(
                &format!("{source} record never decreases"),
                format!(
                    "{source}{at}: {} / {} after {} / {} (max_users / max_visitors)",
                    now.0, now.1, last.0, last.1
                ),
            );
        }
        *last = (last.0.max(now.0), last.1.max(now.1));
    }
}

/// The host app of one instance: a page, the fragment, and the layer around both.
fn app(whos: &WhosOnline) -> Router {
    Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .merge(whos.router())
        .layer(whos.layer())
}

/// One request of every member introduced so far, each to a random instance.
async fn round(chaos: &Chaos, apps: &[Router], rng: &mut Rng) {
    let u = &chaos.universe;
    let users = u.n_users.load(SeqCst);
    let visitors = u.n_visitors.load(SeqCst);
    let bots = u.n_bots.load(SeqCst);
    for name in &u.users[..users] {
        let mut req = common::request_from("10.9.0.1", "/");
        req.headers_mut()
            .insert("x-user", HeaderValue::from_str(name).unwrap());
        send(chaos, &apps[rng.below(apps.len())], req, name).await;
    }
    for ip in &u.visitors[..visitors] {
        let req = common::request_from(&ip.to_string(), "/");
        send(chaos, &apps[rng.below(apps.len())], req, &ip.to_string()).await;
    }
    for ip in &u.bots[..bots] {
        let mut req = common::request_from(&ip.to_string(), "/");
        req.headers_mut().insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(BOT_AGENT),
        );
        send(chaos, &apps[rng.below(apps.len())], req, &ip.to_string()).await;
    }
}

async fn send(chaos: &Chaos, app: &Router, req: http::Request<axum::body::Body>, who: &str) {
    let res = app.clone().oneshot(req).await.unwrap();
    chaos.requests.fetch_add(1, SeqCst);
    if res.status() != 200 {
        chaos.failed.fetch_add(1, SeqCst);
        chaos.broke(
            "host requests answer 200",
            format!("GET / by {who}: {}", res.status()),
        );
    }
}

/// Rounds of requests every 100 ms until stopped, introducing the waves on
/// schedule: wave `w` at `w / (WAVES - 1)` of the first 70 % of `run`.
async fn load(chaos: Arc<Chaos>, apps: Vec<Router>, mut rng: Rng, run: Duration) {
    let gap = run.mul_f64(0.7 / (WAVES - 1) as f64);
    while !chaos.stop_load.load(SeqCst) {
        let due = (chaos.start.elapsed().as_secs_f64() / gap.as_secs_f64()) as usize + 1;
        chaos.universe.introduce(due);
        round(&chaos, &apps, &mut rng).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /stats` on the fragment alone: `Ok(Some(record))` on 200, `Ok(None)` on a
/// 503 JSON error, `Err` on anything else.
async fn stats(whos: &WhosOnline) -> Result<Option<(u64, u64)>, String> {
    let res = whos
        .router::<()>()
        .oneshot(common::request_from("127.0.0.1", "/stats"))
        .await
        .unwrap();
    let status = res.status();
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await
        .map_err(|e| format!("{status}, body unreadable: {e}"))?
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{status}, not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    match status.as_u16() {
        200 => match (body["max_users"].as_u64(), body["max_visitors"].as_u64()) {
            (Some(u), Some(v)) => Ok(Some((u, v))),
            _ => Err(format!("200 without counts: {body}")),
        },
        503 if body["error"].is_string() => Ok(None),
        _ => Err(format!("{status}: {body}")),
    }
}

/// The record row, read directly (not through the proxy).
async fn pg_record(db: &PgPool) -> Result<(u64, u64), sqlx::Error> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT max_users, max_visitors FROM whos_online_site_record")
            .fetch_optional(db)
            .await?;
    Ok(row.map_or((0, 0), |(u, v)| (u as u64, v as u64)))
}

/// Every ~75 ms: each instance's counts and `/stats`, the Postgres record, and
/// one instance's `tick_now()` (in turn).
async fn checker(chaos: Arc<Chaos>, fleet: Vec<WhosOnline>, db: PgPool) {
    let mut last_stats = vec![(0, 0); fleet.len()];
    let mut last_pg = (0, 0);
    let mut turn = 0;
    while !chaos.stop_checker.load(SeqCst) {
        for (i, whos) in fleet.iter().enumerate() {
            if let Ok(o) = whos.online(1000).await {
                let truth = chaos.universe.truth();
                let counts = [o.user_count, o.visitor_count, o.bot_count];
                chaos.check_counts("online()", i, counts, truth);
            }
            match stats(whos).await {
                Ok(Some(record)) => {
                    let truth = chaos.universe.truth();
                    let at = format!(" of instance {i}");
                    chaos.check_record("/stats", &at, record, truth);
                    chaos.check_not_lower("/stats", &at, &mut last_stats[i], record);
                }
                Ok(None) => {
                    chaos.checks.fetch_add(1, SeqCst);
                }
                Err(e) => chaos.broke(
                    "/stats answers 200 or 503 JSON",
                    format!("instance {i}: {e}"),
                ),
            }
        }
        match pg_record(&db).await {
            Ok(record) => {
                let truth = chaos.universe.truth();
                chaos.check_record("postgres", "", record, truth);
                chaos.check_not_lower("postgres", "", &mut last_pg, record);
            }
            Err(e) => eprintln!("chaos: reading the record directly failed: {e}"),
        }
        let i = turn % fleet.len();
        turn += 1;
        if let Ok(r) = fleet[i].tick_now().await {
            let truth = chaos.universe.truth();
            let c = r.counts;
            chaos.check_counts("tick_now()", i, [c.users, c.visitors, c.bots], truth);
            let record = (r.record.max_users, r.record.max_visitors);
            chaos.check_record("tick_now()", &format!(" of instance {i}"), record, truth);
        }
        tokio::time::sleep(Duration::from_millis(75)).await;
    }
}

/// One command on the private Redis, on a connection of its own.
async fn redis_cmd(url: &str, args: &[&str]) -> Result<redis::Value, String> {
    let run = async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async::<redis::Value>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(3), run)
        .await
        .map_err(|_| format!("{args:?} timed out"))?
}

/// Injects faults at random until `until`; returns the server (up) and when
/// the last `CLIENT PAUSE` ends.
async fn driver(
    chaos: Arc<Chaos>,
    mut redis: RedisServer,
    pg: Arc<Proxy>,
    prefix: String,
    mut rng: Rng,
    until: Instant,
) -> (RedisServer, Instant) {
    let url = redis.url();
    let mut paused_until = Instant::now();
    let mut pg_back_at: Option<Instant> = None;
    loop {
        let next = Instant::now() + rng.millis(200, 800);
        if let Some(at) = pg_back_at
            && at <= next
        {
            tokio::time::sleep_until(at.into()).await;
            pg.restore();
            pg_back_at = None;
            chaos.log_fault("pg-restore".into());
        }
        tokio::time::sleep_until(next.into()).await;
        if Instant::now() >= until {
            break;
        }
        // Postgres is cut at most once at a time: then one of the others.
        let kind = if pg_back_at.is_some() {
            rng.below(FAULTS.len() - 1)
        } else {
            rng.below(FAULTS.len())
        };
        chaos.faults[kind].fetch_add(1, SeqCst);
        // A command during a pause would wait for its end, and the client gives
        // up after 500 ms (redis-rs's default response timeout): wait it out.
        // (A kill needs no command: it may land in a pause.)
        if !matches!(FAULTS[kind], "pg-cut" | "redis-restart") {
            tokio::time::sleep_until(paused_until.into()).await;
        }
        let result = match FAULTS[kind] {
            "redis-restart" => {
                let down = rng.millis(100, 600);
                chaos.log_fault(format!("redis-kill({}ms)", down.as_millis()));
                redis.kill();
                tokio::time::sleep(down).await;
                redis.restart().await;
                paused_until = Instant::now();
                chaos.log_fault("redis-up".into());
                Ok(())
            }
            "flushall" => {
                chaos.log_fault("flushall".into());
                redis_cmd(&url, &["FLUSHALL"]).await.map(drop)
            }
            "del-secret" => {
                chaos.log_fault("del-secret".into());
                // The day of the instances' clock (Redis time, the same host); the
                // neighbours too, in case the run crosses midnight UTC.
                let today = chrono::Utc::now().date_naive();
                let keys: Vec<String> = [today.pred_opt(), Some(today), today.succ_opt()]
                    .into_iter()
                    .flatten()
                    .map(|d| format!("{{{prefix}}}:visitor-key:{d}"))
                    .collect();
                let mut args = vec!["DEL"];
                args.extend(keys.iter().map(String::as_str));
                redis_cmd(&url, &args).await.map(drop)
            }
            "del-record" => {
                chaos.log_fault("del-record".into());
                redis_cmd(&url, &["DEL", &format!("{{{prefix}}}:record")])
                    .await
                    .map(drop)
            }
            "client-pause" => {
                let pause = rng.millis(300, 800);
                chaos.log_fault(format!("client-pause({}ms)", pause.as_millis()));
                let ms = pause.as_millis().to_string();
                let r = redis_cmd(&url, &["CLIENT", "PAUSE", &ms]).await.map(drop);
                paused_until = paused_until.max(Instant::now() + pause);
                r
            }
            "pg-cut" => {
                let cut = rng.millis(500, 2000);
                chaos.log_fault(format!("pg-cut({}ms)", cut.as_millis()));
                pg.cut();
                pg_back_at = Some(Instant::now() + cut);
                Ok(())
            }
            other => unreachable!("{other}"),
        };
        if let Err(e) = result {
            chaos.driver_errors.fetch_add(1, SeqCst);
            eprintln!("chaos: fault {} not injected: {e}", FAULTS[kind]);
        }
    }
    if pg_back_at.is_some() {
        pg.restore();
        chaos.log_fault("pg-restore".into());
    }
    (redis, paused_until)
}

/// Flushes until a write goes through without error (`flush()` itself answers
/// once the write ends, failed or not).
async fn flush_cleanly(whos: &WhosOnline) -> bool {
    for _ in 0..20 {
        let errors = whos.counters().flush_errors;
        if whos.flush().await.is_ok() && whos.counters().flush_errors == errors {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_under_random_faults() {
    let seed = env_u64("CHAOS_SEED").unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Rng(nanos as u64 ^ u64::from(std::process::id())).next()
    });
    let run = Duration::from_secs(env_u64("CHAOS_SECS").unwrap_or(8));
    let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    let per_address = flag("CHAOS_IPV6_PER_ADDRESS");
    let secret = flag("CHAOS_VISITOR_SECRET");
    eprintln!(
        "chaos: seed {seed} (replay with CHAOS_SEED={seed}), {} s of faults{}{}",
        run.as_secs(),
        if per_address {
            ", IPv6 visitors counted per address"
        } else {
            ""
        },
        if secret {
            ", a configured visitor secret"
        } else {
            ""
        }
    );
    let mut rng = Rng(seed);
    let universe = Universe::new(&mut rng, per_address);

    let redis = RedisServer::start().await;
    let db = common::migrated_database().await;
    let opts = (*db.connect_options()).clone();
    let pg_proxy = Arc::new(Proxy::to_port(opts.get_port()).await);
    let through_proxy = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(opts.host("127.0.0.1").port(pg_proxy.port()));
    let prefix = common::prefix();
    let fleet: Vec<WhosOnline> = (0..INSTANCES)
        .map(|_| {
            let builder = WhosOnline::builder()
                .redis(redis_pool(&redis.url()).unwrap())
                .postgres(through_proxy.clone())
                .identify_users(common::header_user())
                .prefix(&prefix)
                .flush_interval(Duration::from_millis(100))
                .tick_interval(Duration::from_millis(250))
                .resolution(RESOLUTION)
                .ipv6_prefix(if per_address { 128 } else { 64 });
            if secret {
                builder.visitor_secret(format!("chaos {seed}"))
            } else {
                builder
            }
            .build()
            .unwrap()
        })
        .collect();
    let apps: Vec<Router> = fleet.iter().map(app).collect();

    let chaos = Arc::new(Chaos {
        seed,
        start: Instant::now(),
        universe,
        broken: Mutex::default(),
        fault_log: Mutex::default(),
        faults: Default::default(),
        driver_errors: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        checks: AtomicU64::new(0),
        over: Default::default(),
        record_over: Default::default(),
        stop_load: AtomicBool::new(false),
        stop_checker: AtomicBool::new(false),
    });
    let load_task = tokio::spawn(load(chaos.clone(), apps.clone(), rng.fork(), run));
    let checker_task = tokio::spawn(checker(chaos.clone(), fleet.clone(), db.clone()));
    let driver_task = tokio::spawn(driver(
        chaos.clone(),
        redis,
        pg_proxy.clone(),
        prefix.clone(),
        rng.fork(),
        Instant::now() + run,
    ));

    // The faults stop; every store is back.
    let (redis, paused_until) = driver_task.await.expect("the driver");
    pg_proxy.restore();
    tokio::time::sleep_until(paused_until.into()).await;
    chaos.stop_load.store(true, SeqCst);
    load_task.await.expect("the load");
    let faults_over = chaos.secs();
    // Every member falls due again, and comes back once more.
    tokio::time::sleep(RESOLUTION + Duration::from_millis(200)).await;
    // (All of it: a very short run may end before the last wave.)
    chaos.universe.introduce(WAVES);
    let truth = chaos.universe.full();
    round(&chaos, &apps, &mut rng).await;
    for (i, whos) in fleet.iter().enumerate() {
        if !flush_cleanly(whos).await {
            chaos.broke(
                "final flush succeeds",
                format!("instance {i}: {:?}", whos.counters()),
            );
        }
    }
    let mut tick = None;
    for _ in 0..20 {
        match fleet[0].tick_now().await {
            Ok(r) if !r.raise_pending => {
                tick = Some(r);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    if tick.is_none() {
        chaos.broke(
            "final tick succeeds",
            "instance 0: no tick without a pending raise".into(),
        );
    }
    chaos.stop_checker.store(true, SeqCst);
    checker_task.await.expect("the checker");

    // Converged: every instance counts the truth, the record is the true peak.
    let mut finals = Vec::new();
    for (i, whos) in fleet.iter().enumerate() {
        match whos.online(1000).await {
            Ok(o) => {
                let got = (o.user_count, o.visitor_count, o.bot_count);
                finals.push(format!("{}/{}/{}", got.0, got.1, got.2));
                if got != (truth.users, truth.visitors, truth.bots) {
                    let what =
                        if got.0 > truth.users || got.1 > truth.visitors || got.2 > truth.bots {
                            "above the truth"
                        } else {
                            "below the truth: members lost"
                        };
                    chaos.broke(
                        "counts converge to the truth",
                        format!(
                            "instance {i}: users/visitors/bots {}/{}/{} after the faults, \
                             truth {}/{}/{} ({} distinct visitor addresses): {what}",
                            got.0,
                            got.1,
                            got.2,
                            truth.users,
                            truth.visitors,
                            truth.bots,
                            truth.addresses
                        ),
                    );
                }
                if o.users != chaos.universe.users {
                    chaos.broke(
                        "every user is listed",
                        format!("instance {i}: {:?}", o.users),
                    );
                }
            }
            Err(e) => {
                finals.push("error".into());
                chaos.broke("counts converge to the truth", format!("instance {i}: {e}"));
            }
        }
    }
    let peak = (truth.users, truth.visitors);
    let pg_final = pg_record(&db).await.expect("read the record directly");
    if pg_final != peak {
        chaos.broke(
            "the record in Postgres is the true peak",
            format!(
                "max_users / max_visitors {} / {}, true peak {} / {}",
                pg_final.0, pg_final.1, peak.0, peak.1
            ),
        );
    }
    let mut stats_final = Vec::new();
    for (i, whos) in fleet.iter().enumerate() {
        let s = stats(whos).await;
        stats_final.push(match &s {
            Ok(Some((u, v))) => format!("{u}/{v}"),
            Ok(None) => "503".into(),
            Err(_) => "error".into(),
        });
        if s != Ok(Some(peak)) {
            chaos.broke(
                "/stats is the true peak",
                format!(
                    "instance {i}: {s:?}, true peak {} / {} (Postgres {} / {})",
                    peak.0, peak.1, pg_final.0, pg_final.1
                ),
            );
        }
    }
    for (i, whos) in fleet.iter().enumerate() {
        if let Err(e) = whos.shutdown().await {
            chaos.broke("shutdown writes everything", format!("instance {i}: {e}"));
        }
    }
    drop(redis);

    let faults: Vec<String> = FAULTS
        .iter()
        .zip(&chaos.faults)
        .map(|(k, n)| format!("{k} {}", n.load(SeqCst)))
        .collect();
    let total: u64 = chaos.faults.iter().map(|n| n.load(SeqCst)).sum();
    let o = |i: usize| chaos.over[i].load(SeqCst);
    let r = |i: usize| chaos.record_over[i].load(SeqCst);
    let summary = format!(
        "seed {seed}, {:.1} s of faults ({:.1} s in all): {total} faults ({}; {} not injected); \
         {} host requests, {} failed; {} checks; max over-count users {} visitors {} \
         (over distinct addresses {}) bots {}, record over peak users {} visitors {}; \
         final users/visitors/bots per instance [{}] vs truth {}/{}/{} ({} addresses); \
         record Postgres {}/{}, /stats [{}] vs true peak {}/{}",
        faults_over,
        chaos.secs(),
        faults.join(", "),
        chaos.driver_errors.load(SeqCst),
        chaos.requests.load(SeqCst),
        chaos.failed.load(SeqCst),
        chaos.checks.load(SeqCst),
        o(0),
        o(1),
        o(3),
        o(2),
        r(0),
        r(1),
        finals.join(", "),
        truth.users,
        truth.visitors,
        truth.bots,
        truth.addresses,
        pg_final.0,
        pg_final.1,
        stats_final.join(", "),
        peak.0,
        peak.1,
    );
    eprintln!("chaos: {summary}");
    let broken = chaos.broken.lock().unwrap();
    if !broken.is_empty() {
        let lines: Vec<String> = broken
            .iter()
            .map(|(inv, (n, first))| format!("  {inv}: broken {n} times; first: {first}"))
            .collect();
        panic!(
            "chaos: invariants broken (replay with CHAOS_SEED={seed}):\n{}\n{summary}",
            lines.join("\n")
        );
    }
}
