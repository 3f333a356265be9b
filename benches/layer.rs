//! In-process cost of the layer per request: `oneshot` on a hello-world router
//! with and without it, no network.
//!
//! ```text
//! cargo bench --bench layer
//! ```
//!
//! Every case builds the same requests (10,000 visitors by `X-Forwarded-For` and
//! 1,000 users by `x-bench-user`, rotating, each with a browser's `User-Agent`, as
//! `bench/compare.sh` sends them) on
//! a current-thread runtime. The timed loop yields every 32 requests, so the
//! reporter task runs on the same thread and its work is in the figure, and
//! ends with `flush()`, so nothing is left unwritten. A summary table with each
//! case's ratio to `bare` is printed at the end.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum_whos_online::{ClientIpSource, User, WhosOnline, identify_now};
use criterion::Criterion;
use http::Request;
use tower::{Layer, ServiceExt};

const VISITORS: u64 = 10_000;
const USERS: u64 = 1_000;
const YIELD_EVERY: u64 = 32;

/// The requests of `bench/load.lua`: member `k` of the rotation.
fn rotating(k: u64) -> Request<Body> {
    let total = VISITORS + USERS;
    let k = k % total;
    let before = k * USERS / total;
    if (k + 1) * USERS / total > before {
        with_user(before)
    } else {
        from_visitor(k - before)
    }
}

/// A browser's agent, as `bench/load.lua` sends it.
const AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                     (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

fn base() -> Request<Body> {
    let mut req = Request::get("/")
        .header(http::header::USER_AGENT, AGENT)
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    req
}

fn from_visitor(v: u64) -> Request<Body> {
    let mut req = base();
    let ip = IpAddr::V4(Ipv4Addr::from(0xC612_0000_u32.wrapping_add(v as u32)));
    req.headers_mut()
        .insert("x-forwarded-for", ip.to_string().parse().unwrap());
    req
}

fn with_user(u: u64) -> Request<Body> {
    let mut req = base();
    req.headers_mut()
        .insert("x-bench-user", format!("user{u}").parse().unwrap());
    req
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "Hello, World!" }))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[derive(Clone, Copy)]
enum Store {
    Memory,
    Redis,
}

fn whos(rt: &tokio::runtime::Runtime, store: Store, resolution: Option<Duration>) -> WhosOnline {
    let _entered = rt.enter();
    let mut b = WhosOnline::builder()
        .prefix(format!("whos_bench_layer_{}", std::process::id()))
        .background_ticker(false)
        .client_ip_source(ClientIpSource::RightmostXForwardedFor)
        .identify_users(identify_now(|req| {
            const USER: http::HeaderName = http::HeaderName::from_static("x-bench-user");
            req.headers
                .get(&USER)
                .and_then(|v| v.to_str().ok())
                .map(User::new)
        }));
    if let Some(r) = resolution {
        b = b.resolution(r);
    }
    if let Store::Redis = store {
        b = b.redis(axum_whos_online::redis_pool(&redis_url()).unwrap());
    }
    b.build().unwrap()
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn redis_up(rt: &tokio::runtime::Runtime) -> bool {
    rt.block_on(async {
        let Ok(pool) = axum_whos_online::redis_pool(&redis_url()) else {
            return false;
        };
        let Ok(mut conn) = pool.get().await else {
            return false;
        };
        deadpool_redis::redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    })
}

/// Mean time per request of every case, over all of criterion's runs.
static MEANS: Mutex<Vec<(String, Duration, u64)>> = Mutex::new(Vec::new());

fn record(name: &str, elapsed: Duration, iters: u64) {
    let mut m = MEANS.lock().unwrap();
    match m.iter_mut().find(|(n, ..)| n == name) {
        Some((_, total, n)) => {
            *total += elapsed;
            *n += iters;
        }
        None => m.push((name.to_owned(), elapsed, iters)),
    }
}

/// Runs `iters` requests made by `make` through `app` (and flushes `whos`).
fn case<S>(
    c: &mut Criterion,
    name: &str,
    app: S,
    whos: Option<&WhosOnline>,
    rt: &tokio::runtime::Runtime,
    make: fn(u64) -> Request<Body>,
) where
    S: tower::Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut next = 0u64;
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start_at = next;
            next += iters;
            let elapsed = rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let res = app.clone().oneshot(make(start_at + i)).await.unwrap();
                    assert_eq!(res.status(), 200);
                    if i % YIELD_EVERY == YIELD_EVERY - 1 {
                        tokio::task::yield_now().await;
                    }
                }
                if let Some(w) = whos {
                    w.flush().await.unwrap();
                }
                start.elapsed()
            });
            record(name, elapsed, iters);
            elapsed
        })
    });
}

/// A case with the layer: builds it on `store`, measures the app `wrap` makes
/// with it, and shuts it down (writing what is left) before the next case.
fn layer_case<S>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: Store,
    resolution: Option<Duration>,
    make: fn(u64) -> Request<Body>,
    wrap: impl FnOnce(&WhosOnline) -> S,
) where
    S: tower::Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    let w = whos(rt, store, resolution);
    case(c, name, wrap(&w), Some(&w), rt, make);
    rt.block_on(w.shutdown()).unwrap();
}

fn distinct(k: u64) -> Request<Body> {
    from_visitor(k)
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    case(c, "bare", hello(), None, &rt, rotating);
    // What any layer costs in axum: a pass-through one.
    let noop = tower::util::MapRequestLayer::new(|req: Request<Body>| req);
    case(
        c,
        "no-op layer",
        hello().layer(noop.clone()),
        None,
        &rt,
        rotating,
    );

    layer_case(
        c,
        &rt,
        "layer (memory)",
        Store::Memory,
        None,
        rotating,
        |w| hello().layer(w.layer()),
    );

    // Around the whole router rather than through `Router::layer`, which wraps
    // every route and so boxes and clones one more service per request.
    case(
        c,
        "no-op layer (outer)",
        noop.layer(hello()),
        None,
        &rt,
        rotating,
    );
    layer_case(
        c,
        &rt,
        "layer (memory, outer)",
        Store::Memory,
        None,
        rotating,
        |w| w.layer().layer(hello()),
    );
    // Places named by the route template: the hook runs on every request, and
    // its answer goes with the report.
    {
        let w = {
            let _entered = rt.enter();
            WhosOnline::builder()
                .prefix(format!("whos_bench_layer_places_{}", std::process::id()))
                .background_ticker(false)
                .client_ip_source(ClientIpSource::RightmostXForwardedFor)
                .places(axum_whos_online::place_by_matched_path)
                .identify_users(identify_now(|req| {
                    const USER: http::HeaderName = http::HeaderName::from_static("x-bench-user");
                    req.headers
                        .get(&USER)
                        .and_then(|v| v.to_str().ok())
                        .map(User::new)
                }))
                .build()
                .unwrap()
        };
        case(
            c,
            "layer (memory, places)",
            hello().layer(w.layer()),
            Some(&w),
            &rt,
            rotating,
        );
        rt.block_on(w.shutdown()).unwrap();
    }
    layer_case(
        c,
        &rt,
        "layer (memory, resolution 0)",
        Store::Memory,
        Some(Duration::ZERO),
        rotating,
        |w| hello().layer(w.layer()),
    );
    layer_case(
        c,
        &rt,
        "layer (memory, all distinct)",
        Store::Memory,
        None,
        distinct,
        |w| hello().layer(w.layer()),
    );

    if redis_up(&rt) {
        layer_case(c, &rt, "layer (redis)", Store::Redis, None, rotating, |w| {
            hello().layer(w.layer())
        });
        rt.block_on(async {
            let pool = axum_whos_online::redis_pool(&redis_url()).unwrap();
            if let Ok(mut conn) = pool.get().await {
                // Every key of the prefix: the sets, and whatever else it made.
                let pattern = format!("{{whos_bench_layer_{}}}*", std::process::id());
                let mut cursor = 0u64;
                loop {
                    let Ok((next, keys)): Result<(u64, Vec<String>), _> =
                        deadpool_redis::redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .query_async(&mut conn)
                            .await
                    else {
                        break;
                    };
                    if !keys.is_empty() {
                        let _: Result<(), _> = deadpool_redis::redis::cmd("UNLINK")
                            .arg(keys)
                            .query_async(&mut conn)
                            .await;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        });
    } else {
        eprintln!("layer (redis): skipped, no Redis at {}", redis_url());
    }
}

fn summary() {
    let means = MEANS.lock().unwrap();
    let per = |total: &Duration, n: &u64| total.as_nanos() as f64 / (*n).max(1) as f64;
    let Some(bare) = means
        .iter()
        .find(|(n, ..)| n == "bare")
        .map(|(_, t, n)| per(t, n))
    else {
        return;
    };
    println!(
        "\n{:<32} {:>12} {:>10} {:>12}",
        "case", "ns/request", "vs bare", "added ns"
    );
    for (name, total, n) in means.iter() {
        let ns = per(total, n);
        println!(
            "{name:<32} {ns:>12.0} {:>9.3}x {:>+12.0}",
            ns / bare,
            ns - bare
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    // `--test` runs each case once: no figures worth a table.
    if !std::env::args().any(|a| a == "--test") {
        summary();
    }
}
