//! Shared set-up for the integration tests: real Redis and Postgres, unique key
//! prefixes and databases per test, and a macro that runs one test body against
//! every backend.
#![allow(dead_code, unreachable_pub)]

pub mod proxy;
pub mod servers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum_whos_online::{Builder, ManualClock, WhosOnline};
use http::Request;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::OnceCell;

/// Where the tests find Redis.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A superuser connection that can create databases.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

/// Nothing listens here: a store that is down.
pub const DEAD_REDIS: &str = "redis://127.0.0.1:1";
pub const DEAD_POSTGRES: &str = "postgres://postgres@127.0.0.1:1/postgres";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A name no other test (in this or a parallel run) uses.
pub fn unique(tag: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "{tag}_{secs}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh prefix for Redis keys.
pub fn prefix() -> String {
    unique("wot")
}

const DB_TAG: &str = "whos_online_test";

/// A new, empty database (not migrated), dropped when the test ends: when the
/// test's Tokio runtime shuts down (the end of a `#[tokio::test]`, passed or
/// failed), it drops a task that holds a [`DropDatabase`] guard, which drops the
/// database `WITH (FORCE)`, closing what still connects to it. Databases of
/// earlier runs older than an hour (a run that was killed) are dropped on the
/// first call, so the server does not fill up.
pub async fn fresh_database() -> PgPool {
    static SWEPT: OnceCell<()> = OnceCell::const_new();
    let admin = PgPool::connect(&database_url())
        .await
        .expect("Postgres must be running at DATABASE_URL");
    SWEPT
        .get_or_init(|| async {
            let now = chrono::Utc::now().timestamp();
            let names: Vec<String> =
                sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                    .bind(format!("{DB_TAG}_%"))
                    .fetch_all(&admin)
                    .await
                    .unwrap_or_default();
            for name in names {
                let secs: i64 = name
                    .trim_start_matches(&format!("{DB_TAG}_"))
                    .split('_')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(now);
                if now - secs > 3600 {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&admin)
                            .await;
                }
            }
        })
        .await;
    let name = unique(DB_TAG);
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let guard = DropDatabase(name.clone());
    tokio::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
    let mut url = url_without_db(&database_url());
    url.push('/');
    url.push_str(&name);
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .expect("connect to test database")
}

/// Drops the named test database when dropped itself. It connects on a thread
/// of its own with its own runtime, since it may be dropped while a runtime is
/// shutting down; failures are ignored (the next run's sweep catches those).
pub struct DropDatabase(pub String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.0);
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let drop_it = async {
                    use sqlx::Connection;
                    let mut conn = sqlx::PgConnection::connect(&database_url()).await.ok()?;
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                    conn.close().await.ok()
                };
                let _ = tokio::time::timeout(Duration::from_secs(10), drop_it).await;
            });
        });
        let _ = dropper.join();
    }
}

pub fn url_without_db(url: &str) -> String {
    // postgres://user@host:port/db?params -> postgres://user@host:port
    let (base, _) = url.split_once('?').unwrap_or((url, ""));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    match base[scheme_end..].find('/') {
        Some(i) => base[..scheme_end + i].to_string(),
        None => base.to_string(),
    }
}

/// A new, migrated database.
pub async fn migrated_database() -> PgPool {
    let pool = fresh_database().await;
    axum_whos_online::migrate(&pool).await.expect("migrate");
    pool
}

/// A pool onto a Redis that is down; every command fails fast.
pub fn dead_redis() -> deadpool_redis::Pool {
    axum_whos_online::redis_pool(DEAD_REDIS).unwrap()
}

/// A pool onto a Postgres that is down.
pub fn dead_postgres() -> PgPool {
    PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(DEAD_POSTGRES)
        .unwrap()
}

/// Which stores a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// Redis presence and Postgres record.
    Real,
    /// The in-memory defaults.
    Memory,
}

/// A whos-online instance for a test: a manual clock, no background ticker or
/// refresh.
pub struct Site {
    pub whos: WhosOnline,
    pub clock: ManualClock,
    pub prefix: String,
    pub pg: Option<PgPool>,
}

impl Site {
    /// A site on `stack` with the default settings but a manual clock and ticks.
    pub async fn new(stack: Stack) -> Self {
        Self::with(stack, |b| b).await
    }

    /// Same, with further settings.
    pub async fn with(stack: Stack, configure: impl FnOnce(Builder) -> Builder) -> Self {
        let clock = ManualClock::at_unix(1_764_000_000);
        let prefix = prefix();
        let mut builder = WhosOnline::builder()
            .identify_users(header_user())
            .clock(clock.clone())
            .prefix(&prefix)
            .background_ticker(false)
            // The view changes at tick_now, reset_record and refresh_now.
            .background_refresh(false)
            // The tests drive the manual clock; Redis time would override it.
            .server_time(false);
        let mut pg = None;
        if stack == Stack::Real {
            let pool = migrated_database().await;
            pg = Some(pool.clone());
            builder = builder
                .redis(axum_whos_online::redis_pool(&redis_url()).unwrap())
                .postgres(pool);
        }
        let whos = configure(builder).build().expect("build");
        Self {
            whos,
            clock,
            prefix,
            pg,
        }
    }
}

/// Reads a manual clock as the `DateTime` a record would carry.
pub trait ClockExt {
    fn now_for_test(&self) -> chrono::DateTime<chrono::Utc>;
}

impl ClockExt for ManualClock {
    fn now_for_test(&self) -> chrono::DateTime<chrono::Utc> {
        axum_whos_online::Clock::now(self)
    }
}

/// Test identity: the `x-user` header names a logged-in user, known as the
/// request arrives.
pub fn header_user() -> impl axum_whos_online::IdentifyUser {
    axum_whos_online::identify_now(|req| {
        req.headers
            .get("x-user")
            .map(|v| axum_whos_online::User::new(String::from_utf8_lossy(v.as_bytes())))
    })
}

/// The same identity through a deferred hook: the answer is a future, polled
/// once the response is ready.
#[allow(dead_code)]
pub fn deferred_header_user() -> impl axum_whos_online::IdentifyUser {
    axum_whos_online::identify_fn(|req| {
        let user = req
            .headers
            .get("x-user")
            .map(|v| axum_whos_online::User::new(String::from_utf8_lossy(v.as_bytes())));
        async move { user }
    })
}

impl Site {
    /// The app under test: a hello route, the fragment, and the layer.
    pub fn app(&self) -> axum::Router {
        axum::Router::new()
            .route("/", axum::routing::get(|| async { "hello" }))
            .merge(self.whos.router())
            .layer(self.whos.layer())
    }

    /// Sends `req` through the app and asserts the host's request succeeded.
    pub async fn send(&self, req: Request<Body>) -> axum::response::Response {
        use tower::ServiceExt;
        self.app().oneshot(req).await.unwrap()
    }

    /// Writes every queued report and refreshes the view, so reads show them.
    pub async fn settle(&self) {
        self.whos.flush().await.unwrap();
        self.whos.refresh_now().await.unwrap();
    }

    /// A page view of `/` by the user `name`, from `ip`.
    pub async fn visit_as(&self, name: &str, ip: &str) {
        let mut req = request_from(ip, "/");
        req.headers_mut().insert("x-user", name.parse().unwrap());
        assert_eq!(self.send(req).await.status(), 200);
    }

    /// A page view of `/` by an anonymous visitor from `ip`.
    pub async fn visit(&self, ip: &str) {
        assert_eq!(self.send(request_from(ip, "/")).await.status(), 200);
    }

    /// GET `uri` on the fragment, returning status and JSON.
    pub async fn get_json(&self, uri: &str) -> (http::StatusCode, serde_json::Value) {
        let res = self.send(request_from("127.0.0.1", uri)).await;
        let status = res.status();
        (status, json(res).await)
    }
}

/// A page view of `/` through `app` from `ip`, as the user `user` (the `x-user`
/// header) or anonymously; the host's request must succeed.
pub async fn page(app: &axum::Router, user: Option<&str>, ip: &str) {
    use tower::ServiceExt;
    let mut req = request_from(ip, "/");
    if let Some(u) = user {
        req.headers_mut().insert("x-user", u.parse().unwrap());
    }
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);
}

/// GET `uri` on the fragment alone (not through the layer, so that reading does
/// not itself report a visitor); must answer 200 with JSON.
pub async fn fragment(whos: &WhosOnline, uri: &str) -> serde_json::Value {
    use tower::ServiceExt;
    let res = whos
        .router::<()>()
        .oneshot(request_from("127.0.0.1", uri))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    json(res).await
}

/// The members of one of a site's sets in the shared Redis (`set` is `users`,
/// `visitors`, ...), sorted.
pub async fn redis_members(prefix: &str, set: &str) -> Vec<String> {
    let pool = axum_whos_online::redis_pool(&redis_url()).unwrap();
    let mut conn = pool.get().await.unwrap();
    let mut members: Vec<String> = deadpool_redis::redis::cmd("ZRANGE")
        .arg(format!("{{{prefix}}}:{set}"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    members.sort();
    members
}

/// A GET request from `ip`, as a server with connect info would hand it over.
pub fn request_from(ip: &str, uri: &str) -> Request<Body> {
    let addr: SocketAddr = format!("{ip}:40000")
        .parse()
        .or_else(|_| format!("[{ip}]:40000").parse())
        .unwrap();
    let mut req = Request::get(uri).body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

/// Reads a response body as JSON.
pub async fn json(res: axum::response::Response) -> serde_json::Value {
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Runs each named `async fn(Stack)` test body against Redis+Postgres and against
/// the in-memory stores, as two tests.
#[macro_export]
macro_rules! on_both_stacks {
    ($($name:ident),* $(,)?) => {
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Stack::Real).await
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Stack::Memory).await
                }
            )*
        }
    };
}
