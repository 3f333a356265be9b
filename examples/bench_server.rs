//! The benchmark server: one "hello world" app served three ways, for
//! `bench/compare.sh`.
//!
//! ```text
//! cargo run --release --example bench_server -- --mode layer --bind 127.0.0.1:3900
//! ```
//!
//! * `bare`: the app alone.
//! * `noop`: the app behind a pass-through layer: what any layer costs in axum.
//! * `layer`: the app with this crate's layer, presence in Redis, wrapped around
//!   the whole router (the cheaper way, see `docs/performance.md`).
//! * `layer-router`: the same layer added with `Router::layer`, which wraps each
//!   route and so boxes and clones one more service per request.
//! * `naive`: the app behind a middleware that awaits one `ZADD` per request before
//!   the handler runs (the design this crate replaces), on the same kind of
//!   `deadpool-redis` pool, keyed by the same rules.
//! * `footer`: `layer`, and a page handler that renders the forum footer (the
//!   counts, the first five names, the record) from [`WhosOnline::view`] on
//!   every request: no store call.
//! * `routes`: the layer, added with `Router::layer`, on a router of 32 routes
//!   (`/`, `/forum/{id}`, `/topic/{id}`, `/r3` ... `/r31`); `bench/load.lua`
//!   sends each member to a page of its own in this mode.
//! * `places`: `routes`, with the `MatchedPath` place hook: what places cost.
//! * `bare-footer`: the same page rendered from constant data, without the
//!   crate: the baseline for what the page's own rendering costs.
//! * `footer-reads`: the same page, reading the store on every request as the
//!   handle's reads did before the view (one pipelined presence read and one
//!   record cache read: two Redis round trips per page).
//!
//! For the load tool on one machine to stand for many clients, both Redis modes
//! trust the rightmost `X-Forwarded-For` entry for the visitor's address, and the
//! `x-bench-user` header marks a request as the logged-in user it names.
//!
//! Flags: `--mode bare|noop|layer|layer-router|naive|footer|footer-reads|bare-footer|routes|places`
//! (default `layer`), `--bind ADDR` (default
//! `127.0.0.1:3900`), `--prefix P` (Redis key prefix; default one unique to the
//! run), `--threads N` (Tokio workers; default: the CPUs this process may use),
//! `--resolution SECS` (layer mode: the de-duplication resolution; default 30, 0
//! writes every report).
//! `REDIS_URL` (default `redis://127.0.0.1:6379`). Stops on SIGTERM or Ctrl-C after
//! writing every queued report, then prints one `STATS` line on stderr.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum_whos_online::{
    ClientIpSource, PresenceStore, Record, RecordCache, RedisPresence, User, WhosOnline,
    identify_now,
};
use deadpool_redis::redis;
use http::HeaderName;
use tower::Layer;

const USER_HEADER: HeaderName = HeaderName::from_static("x-bench-user");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    Noop,
    Layer,
    LayerRouter,
    Naive,
    Footer,
    FooterReads,
    BareFooter,
    Routes,
    Places,
}

struct Args {
    mode: Mode,
    bind: SocketAddr,
    prefix: String,
    threads: Option<usize>,
    resolution: Option<Duration>,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "bench_server: {problem}\n\
         usage: bench_server [--mode bare|noop|layer|layer-router|naive|footer|footer-reads|bare-footer|routes|places] [--bind ADDR] [--prefix P] [--threads N]\n\
         \x20                   [--resolution SECS]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let pid = std::process::id();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut args = Args {
        mode: Mode::Layer,
        bind: SocketAddr::from(([127, 0, 0, 1], 3900)),
        prefix: format!("whos_bench_{secs}_{pid}"),
        threads: None,
        resolution: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--mode" => {
                args.mode = match value().as_str() {
                    "bare" => Mode::Bare,
                    "noop" => Mode::Noop,
                    "layer" => Mode::Layer,
                    "layer-router" => Mode::LayerRouter,
                    "naive" => Mode::Naive,
                    "footer" => Mode::Footer,
                    "footer-reads" => Mode::FooterReads,
                    "bare-footer" => Mode::BareFooter,
                    "routes" => Mode::Routes,
                    "places" => Mode::Places,
                    other => usage(&format!("unknown mode {other:?}")),
                }
            }
            "--bind" => {
                args.bind = value()
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--bind: {e}")))
            }
            "--prefix" => args.prefix = value(),
            "--threads" => {
                args.threads = Some(
                    value()
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .unwrap_or_else(|| usage("--threads needs a positive number")),
                )
            }
            "--resolution" => {
                args.resolution =
                    Some(Duration::from_secs(value().parse().unwrap_or_else(|_| {
                        usage("--resolution needs whole seconds")
                    })))
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown flag {other:?}")),
        }
    }
    args
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n);
    }
    runtime.enable_all().build()?.block_on(serve(args))
}

async fn hello() -> &'static str {
    "Hello, World!"
}

/// The router of the `routes` and `places` modes: 32 routes answering "hello".
fn many_routes() -> Router {
    let mut router = Router::new()
        .route("/", get(hello))
        .route("/forum/{id}", get(hello))
        .route("/topic/{id}", get(hello));
    for r in 3..32 {
        router = router.route(&format!("/r{r}"), get(hello));
    }
    router
}

/// Names the footer lists.
const FOOTER_NAMES: usize = 5;

/// The forum footer, from the view: no I/O.
async fn footer(State(whos): State<WhosOnline>) -> String {
    let view = whos.view();
    let mut names: Vec<&str> = view
        .recent()
        .iter()
        .take(FOOTER_NAMES)
        .map(|(name, _)| name.as_str())
        .collect();
    names.sort_unstable();
    render_footer(
        view.user_count(),
        view.visitor_count(),
        &names,
        &view.record(),
    )
}

/// The same page from constant data, without the crate: what rendering it
/// costs by itself.
async fn bare_footer() -> String {
    static RECORD: std::sync::LazyLock<Record> = std::sync::LazyLock::new(|| {
        Record::seen(
            55,
            400,
            chrono::DateTime::from_timestamp(1_764_185_364, 0).unwrap(),
        )
    });
    render_footer(12, 340, &["alice", "bob", "carol", "dave", "erin"], &RECORD)
}

/// The same footer, read from Redis on every request.
async fn footer_reads(State(store): State<Arc<RedisPresence>>) -> String {
    let cutoff = chrono::Utc::now().timestamp() - 900;
    let (seen, record) = tokio::join!(store.snapshot(cutoff, FOOTER_NAMES), store.cached_record());
    let seen = seen.unwrap_or_default();
    let record = record.ok().flatten().unwrap_or_default();
    let online = seen.online(FOOTER_NAMES);
    let names: Vec<&str> = online.users.iter().map(String::as_str).collect();
    render_footer(online.user_count, online.visitor_count, &names, &record)
}

/// "Hello, World! 12 users (alice, bob) and 340 guests online; most ever 55 on
/// 2025-11-26 19:29 UTC", written into one buffer.
fn render_footer(users: u64, visitors: u64, names: &[&str], record: &Record) -> String {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    let mut out = String::with_capacity(160);
    let _ = write!(out, "Hello, World! {users} users (");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
    }
    let _ = write!(out, ") and {visitors} guests online; most ever ");
    match record.max_users_date {
        Some(d) => {
            let _ = write!(
                out,
                "{} on {:04}-{:02}-{:02} {:02}:{:02} UTC",
                record.max_users,
                d.year(),
                d.month(),
                d.day(),
                d.hour(),
                d.minute()
            );
        }
        None => out.push_str("no record yet"),
    }
    out
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let app = Router::new().route("/", get(hello));
    let mut whos = None;
    let mut naive = None;
    let app = match args.mode {
        Mode::Bare => app,
        Mode::BareFooter => Router::new().route("/", get(bare_footer)),
        Mode::Noop => app.layer(tower::util::MapRequestLayer::new(|req: Request| req)),
        Mode::Layer
        | Mode::LayerRouter
        | Mode::Footer
        | Mode::FooterReads
        | Mode::Routes
        | Mode::Places => {
            let mut builder = WhosOnline::builder();
            if let Some(r) = args.resolution {
                builder = builder.resolution(r);
            }
            if args.mode == Mode::Places {
                builder = builder.places(axum_whos_online::place_by_matched_path);
            }
            let w = builder
                .redis(axum_whos_online::redis_pool(&redis_url)?)
                .prefix(&args.prefix)
                .client_ip_source(ClientIpSource::RightmostXForwardedFor)
                .identify_users(identify_now(|req| {
                    req.headers
                        .get(&USER_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(User::new)
                }))
                .build()?;
            let app = match args.mode {
                Mode::LayerRouter => app.layer(w.layer()),
                Mode::Routes | Mode::Places => many_routes().layer(w.layer()),
                // With the fragment, for bench/streams.sh's subscribers.
                Mode::Footer => Router::new()
                    .route("/", get(footer))
                    .with_state(w.clone())
                    .merge(w.router()),
                Mode::FooterReads => {
                    let store =
                        RedisPresence::new(axum_whos_online::redis_pool(&redis_url)?, &args.prefix);
                    Router::new()
                        .route("/", get(footer_reads))
                        .with_state(Arc::new(store))
                }
                _ => app,
            };
            whos = Some(w);
            app
        }
        Mode::Naive => {
            let state = Arc::new(Naive {
                pool: axum_whos_online::redis_pool(&redis_url)?,
                users: format!("{{{}}}:users", args.prefix),
                visitors: format!("{{{}}}:visitors", args.prefix),
                written: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            });
            naive = Some(Arc::clone(&state));
            app.layer(middleware::from_fn_with_state(state, zadd_per_request))
        }
    };

    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    eprintln!(
        "bench_server: {:?} on {} (prefix {})",
        args.mode,
        listener.local_addr()?,
        args.prefix
    );
    match &whos {
        // The layer around the router: one service for the whole app.
        Some(w) if matches!(args.mode, Mode::Layer | Mode::Footer | Mode::FooterReads) => {
            let app = w.layer().layer(app);
            axum::serve(
                listener,
                axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app),
            )
            .with_graceful_shutdown(w.shutdown_signal())
            .await?
        }
        _ => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(axum_whos_online::shutdown_signal())
            .await?
        }
    }

    if let Some(w) = whos {
        // Ctrl-C or SIGTERM stopped the server: write what is queued first.
        let shut = w.shutdown().await;
        let c = w.counters();
        eprintln!(
            "STATS mode={:?} reports_queued={} reports_dropped={} pending_dropped={} flushes={} flush_errors={} members_written={}",
            args.mode,
            c.reports_queued,
            c.reports_dropped,
            c.pending_dropped,
            c.flushes,
            c.flush_errors,
            c.members_written
        );
        shut?;
    }
    if let Some(n) = naive {
        eprintln!(
            "STATS mode=naive members_written={} write_errors={}",
            n.written.load(Relaxed),
            n.failed.load(Relaxed)
        );
    }
    Ok(())
}

/// The per-request design: every request waits for its own `ZADD` round trip.
struct Naive {
    pool: deadpool_redis::Pool,
    users: String,
    visitors: String,
    written: AtomicU64,
    failed: AtomicU64,
}

/// The rightmost address of the last `X-Forwarded-For` header, as the layer's
/// `ClientIpSource::RightmostXForwardedFor` reads it.
fn rightmost_x_forwarded_for(headers: &http::HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let value = last.to_str().ok()?;
    value.rsplit(',').next()?.trim().parse().ok()
}

/// The same identity rules as the layer: a valid user name from the header, else
/// the rightmost `X-Forwarded-For` address, else the TCP peer; IPv4-mapped IPv6
/// folded to IPv4. A Redis failure is counted and the request goes on.
async fn zadd_per_request(State(s): State<Arc<Naive>>, req: Request, next: Next) -> Response {
    let user = req
        .headers()
        .get(&USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(User::new)
        .filter(|u| !u.name().is_empty() && u.name().len() <= axum_whos_online::MAX_USER_NAME_LEN);
    let seen = match user {
        Some(u) => Some((&s.users, u.name().to_owned())),
        None => rightmost_x_forwarded_for(req.headers())
            .or_else(|| {
                req.extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ci| ci.0.ip())
            })
            .map(|ip: IpAddr| (&s.visitors, ip.to_canonical().to_string())),
    };
    if let Some((key, member)) = seen {
        let now = chrono::Utc::now().timestamp();
        let written = match s.pool.get().await {
            Ok(mut conn) => redis::cmd("ZADD")
                .arg(key)
                .arg("GT")
                .arg(now)
                .arg(member)
                .query_async::<()>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        };
        let counter = if written { &s.written } else { &s.failed };
        counter.fetch_add(1, Relaxed);
    }
    next.run(req).await
}
