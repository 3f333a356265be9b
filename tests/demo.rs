//! The embedded demo, driven through its real router: login, logout, the footer,
//! escaping, and the JSON routes, on the in-memory stores and on Redis+Postgres.

mod common;
#[path = "../examples/demo.rs"]
#[allow(dead_code)]
mod demo;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum_whos_online::{ClientIpSource, Online, WhosOnline};
use common::Stack;
use demo::DemoConfig;
use http::{Method, Request, StatusCode, header};
use sqlx::PgPool;
use tower::ServiceExt;

/// The demo site under test.
struct Demo {
    router: Router,
    whos: WhosOnline,
    /// The record database (real stack only), to check what the demo wrote.
    pg: Option<PgPool>,
}

impl Demo {
    /// Starts the demo with an in-memory config, or with Redis and a fresh,
    /// unmigrated database that `demo::app` has to migrate itself.
    async fn start(stack: Stack) -> Self {
        let mut config = DemoConfig {
            prefix: common::prefix(),
            // The tests tick with `tick_now`; the background ticker ticks once at start.
            tick_interval: Duration::from_secs(24 * 3600),
            ..DemoConfig::default()
        };
        let mut pg = None;
        if stack == Stack::Real {
            let pool = common::fresh_database().await;
            let db = pool
                .connect_options()
                .get_database()
                .expect("test database has a name")
                .to_owned();
            config.redis_url = Some(common::redis_url());
            config.database_url = Some(with_database(&common::database_url(), &db));
            pg = Some(pool);
        }
        let (router, whos) = demo::app(&config).await.expect("demo app starts");
        // Let that first background tick pass, so it cannot count what the test
        // does next and raise the record behind its back.
        for _ in 0..500 {
            if whos.counters().ticks > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            whos.counters().ticks > 0,
            "the first background tick never ran"
        );
        Self { router, whos, pg }
    }

    async fn send(&self, req: Request<Body>) -> Response {
        self.router.clone().oneshot(req).await.expect("infallible")
    }

    /// `GET uri` from `ip`, with a session cookie if given.
    async fn get(&self, ip: &str, uri: &str, cookie: Option<&str>) -> Response {
        let mut req = common::request_from(ip, uri);
        if let Some(c) = cookie {
            req.headers_mut().insert(header::COOKIE, c.parse().unwrap());
        }
        self.send(req).await
    }

    /// `GET /` from `ip`; asserts 200 HTML and returns the page.
    async fn page(&self, ip: &str, cookie: Option<&str>) -> String {
        let res = self.get(ip, "/", cookie).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        text(res).await
    }

    /// `POST uri` with a url-encoded form body from `ip`.
    async fn post(&self, ip: &str, uri: &str, body: &str, cookie: Option<&str>) -> Response {
        let (mut parts, _) = common::request_from(ip, uri).into_parts();
        parts.method = Method::POST;
        parts.headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        if let Some(c) = cookie {
            parts.headers.insert(header::COOKIE, c.parse().unwrap());
        }
        self.send(Request::from_parts(parts, Body::from(body.to_owned())))
            .await
    }

    /// Logs in as `name` from `ip`; asserts the redirect and returns the cookie.
    async fn login(&self, ip: &str, name: &str) -> String {
        let res = self.post(ip, "/login", &username_form(name), None).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers()[header::LOCATION], "/");
        session_cookie(&res).expect("login sets a session cookie")
    }

    /// `GET uri` on the JSON routes; asserts a JSON body.
    async fn json(&self, ip: &str, uri: &str, cookie: Option<&str>) -> serde_json::Value {
        let res = self.get(ip, uri, cookie).await;
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        common::json(res).await
    }

    /// Flushes until `done` holds for who's online, then returns it. Reports are
    /// made when a response is ready, and a session lookup may finish on a task
    /// of its own, so one flush may come a moment too early.
    async fn online_when(&self, done: impl Fn(&Online) -> bool) -> Online {
        let mut online = Online::default();
        for _ in 0..200 {
            self.whos.flush().await.expect("flush");
            online = self.whos.online(1000).await.expect("online");
            if done(&online) {
                return online;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition never held; last seen {online:?}");
    }
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    }
}

/// `username=<name>`, percent-encoded.
fn username_form(name: &str) -> String {
    let mut body = String::from("username=");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            body.push(b as char);
        } else {
            body.push_str(&format!("%{b:02X}"));
        }
    }
    body
}

/// The `name=value` part of the response's `set-cookie`, if any.
fn session_cookie(res: &Response) -> Option<String> {
    let value = res.headers().get(header::SET_COOKIE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_owned())
}

async fn text(res: Response) -> String {
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8 body")
}

const ALICE_IP: &str = "10.0.0.1";
const OTHER_IP: &str = "10.0.0.2";

async fn login_flow(stack: Stack) {
    let demo = Demo::start(stack).await;

    let cookie = demo.login(ALICE_IP, "alice").await;
    // The login request itself was reported; once written, the page shows it.
    demo.online_when(|o| o.user_count == 1).await;
    let page = demo.page(ALICE_IP, Some(&cookie)).await;
    assert!(page.contains("Logged in as"), "{page}");
    assert!(page.contains("alice"), "{page}");
    assert!(page.contains("action=\"/logout\""), "{page}");
    assert!(
        page.contains(
            "Users online: <span id=\"user-count\">1</span> (<span id=\"user-list\">alice</span>)"
        ),
        "{page}"
    );

    let online = demo.json(ALICE_IP, "/online", Some(&cookie)).await;
    assert_eq!(online["users"], serde_json::json!(["alice"]));
    assert_eq!(online["user_count"], 1);
    assert_eq!(online["visitor_count"], 0, "a user is not also a visitor");
    assert_eq!(online["window_secs"], 900);

    // Another browser, without a cookie, is a visitor and sees the login form.
    let page = demo.page(OTHER_IP, None).await;
    assert!(!page.contains("Logged in as"), "{page}");
    assert!(page.contains("action=\"/login\""), "{page}");
    assert!(page.contains("alice"), "the footer lists alice: {page}");

    let seen = demo.online_when(|o| o.visitor_count >= 1).await;
    assert_eq!((seen.user_count, seen.visitor_count), (1, 1));

    // A crawler: counted as a bot, named in the footer, not a visitor.
    let mut req = common::request_from("10.0.0.3", "/");
    req.headers_mut().insert(
        header::USER_AGENT,
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
            .parse()
            .unwrap(),
    );
    assert_eq!(demo.send(req).await.status(), StatusCode::OK);
    let seen = demo.online_when(|o| o.bot_count >= 1).await;
    assert_eq!(seen.bots, ["Googlebot"]);
    assert_eq!(seen.visitor_count, 1);
    let page = demo.page(OTHER_IP, None).await;
    assert!(
        page.contains(
            "Bots online: <span id=\"bot-count\">1</span> (<span id=\"bot-list\">Googlebot</span>)"
        ),
        "{page}"
    );
    let online = demo.json(ALICE_IP, "/online", Some(&cookie)).await;
    assert_eq!(online["users"], serde_json::json!(["alice"]));
    assert_eq!(online["user_count"], 1);
    assert_eq!(online["visitor_count"], 1);

    // Log out: the session ends, and this browser is a visitor from now on.
    let res = demo.post(ALICE_IP, "/logout", "", Some(&cookie)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/");
    let page = demo.page(ALICE_IP, Some(&cookie)).await;
    assert!(
        !page.contains("Logged in as"),
        "old cookie still logged in: {page}"
    );
    assert!(page.contains("action=\"/login\""), "{page}");

    // The logout handler called `user_left`: alice leaves the list at once,
    // not when the window passes; her browser is a visitor now.
    let seen = demo.online_when(|o| o.visitor_count >= 2).await;
    assert_eq!((seen.user_count, seen.visitor_count), (0, 2));
    let online = demo.json(OTHER_IP, "/online", None).await;
    assert_eq!(online["users"], serde_json::json!([]));
    assert_eq!(online["visitor_count"], 2);
    // And stays off: the reports of her earlier requests were written before.
    demo.whos.flush().await.unwrap();
    assert_eq!(demo.whos.refresh_now().await.unwrap().user_count(), 0);

    demo.whos.shutdown().await.unwrap();
}

async fn names_are_escaped(stack: Stack) {
    let demo = Demo::start(stack).await;

    let cookie = demo.login(ALICE_IP, "<b>x</b>").await;
    let page = demo.page(ALICE_IP, Some(&cookie)).await;
    assert!(!page.contains("<b>x</b>"), "raw name in page: {page}");
    assert!(
        page.contains("Logged in as <strong>&lt;b&gt;x&lt;/b&gt;</strong>"),
        "{page}"
    );

    let script = "<script>alert('x & y')</script>";
    demo.login(OTHER_IP, script).await;
    demo.online_when(|o| o.user_count == 2).await;
    let page = demo.page(ALICE_IP, Some(&cookie)).await;
    assert!(
        !page.contains("<script>alert"),
        "raw script in page: {page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(&#39;x &amp; y&#39;)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("&lt;b&gt;x&lt;/b&gt;, &lt;script&gt;"),
        "footer list: {page}"
    );

    // The JSON route returns the names as they are: escaping is the page's job.
    let online = demo.json(ALICE_IP, "/online", Some(&cookie)).await;
    assert_eq!(online["users"], serde_json::json!(["<b>x</b>", script]));

    demo.whos.shutdown().await.unwrap();
}

async fn record_after_tick(stack: Stack) {
    let demo = Demo::start(stack).await;

    let stats = demo.json(OTHER_IP, "/stats", None).await;
    assert_eq!(stats["max_users"], 0);
    assert!(stats["max_users_date"].is_null());
    let page = demo.page(OTHER_IP, None).await;
    assert!(
        page.contains("Most users ever online: no record yet"),
        "{page}"
    );
    assert!(
        page.contains("Most visitors ever online: no record yet"),
        "{page}"
    );

    let cookie = demo.login(ALICE_IP, "alice").await;
    demo.online_when(|o| o.user_count == 1 && o.visitor_count == 1)
        .await;
    let tick = demo.whos.tick_now().await.expect("tick");
    // Raised by the tick, or already by the view's refresh when it saw them.
    assert_eq!((tick.record.max_users, tick.record.max_visitors), (1, 1));
    assert_eq!((tick.counts.users, tick.counts.visitors), (1, 1));

    let stats = demo.json(ALICE_IP, "/stats", Some(&cookie)).await;
    assert_eq!(stats["max_users"], 1);
    assert_eq!(stats["max_visitors"], 1);
    for field in ["max_users_date", "max_visitors_date"] {
        let date = stats[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {stats}"));
        assert!(date.ends_with('Z'), "{field} = {date}");
        chrono::DateTime::parse_from_rfc3339(date).expect("RFC 3339");
    }

    let page = demo.page(ALICE_IP, Some(&cookie)).await;
    assert!(page.contains("Most users ever online was 1 on "), "{page}");
    assert!(
        page.contains("Most visitors ever online was 1 on "),
        "{page}"
    );
    assert!(page.contains(" UTC"), "{page}");

    if let Some(pg) = &demo.pg {
        // Postgres holds the truth, in the table the demo's migration created.
        let max_users: i64 = sqlx::query_scalar("SELECT max_users FROM whos_online_site_record")
            .fetch_one(pg)
            .await
            .expect("record row");
        assert_eq!(max_users, 1);
    }

    demo.whos.shutdown().await.unwrap();
}

/// Forum pages say who is browsing that forum (the demo's place hook: each
/// forum by its path, other pages by route template; the JSON routes move
/// nobody), and the admin fragment answers only the user named `admin`.
async fn forum_pages_and_the_admin_detail(stack: Stack) {
    let demo = Demo::start(stack).await;
    let alice = demo.login(ALICE_IP, "alice").await;
    for (ip, uri, cookie) in [
        (ALICE_IP, "/forum/1", Some(alice.as_str())),
        ("10.0.0.5", "/forum/1", None),
        ("10.0.0.6", "/forum/2", None),
    ] {
        assert_eq!(demo.get(ip, uri, cookie).await.status(), StatusCode::OK);
    }
    // Reading the JSON does not move alice out of the forum.
    demo.json(ALICE_IP, "/online", Some(&alice)).await;
    let mut here = Online::default();
    for _ in 0..200 {
        demo.whos.flush().await.unwrap();
        demo.whos.refresh_now().await.unwrap();
        here = demo.whos.online_in("/forum/1", 10);
        if here.user_count == 1 && here.visitor_count == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(here.users, ["alice"]);
    assert_eq!((here.user_count, here.visitor_count), (1, 1));

    let page = text(demo.get("10.0.0.7", "/forum/1", None).await).await;
    assert!(page.contains("<h1>Forum 1</h1>"), "{page}");
    assert!(
        page.contains("<p id=\"browsing\">Browsing this forum: alice and 1 guest</p>"),
        "{page}"
    );
    assert!(
        page.contains("id=\"user-list\">alice</span>"),
        "the site footer too: {page}"
    );
    let page = text(demo.get("10.0.0.7", "/forum/2", None).await).await;
    assert!(
        page.contains("Browsing this forum: no users and 1 guest"),
        "{page}"
    );
    let online = demo
        .json("10.0.0.7", "/online?place=%2Fforum%2F1", None)
        .await;
    assert_eq!(online["users"], serde_json::json!(["alice"]));
    let res = demo
        .get("10.0.0.7", &format!("/forum/{}", "x".repeat(33)), None)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let page = text(demo.get("10.0.0.7", "/forum/%3Cb%3E", None).await).await;
    assert!(page.contains("<h1>Forum &lt;b&gt;</h1>"), "{page}");

    // The admin fragment: nobody, alice: 403 JSON; admin: who is where.
    for cookie in [None, Some(alice.as_str())] {
        let res = demo.get(ALICE_IP, "/admin/online/detail", cookie).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(common::json(res).await["error"].is_string());
    }
    let admin = demo.login("10.0.0.9", "admin").await;
    let detail = demo
        .json("10.0.0.9", "/admin/online/detail", Some(&admin))
        .await;
    let alice_entry = detail["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "alice")
        .cloned()
        .unwrap_or_else(|| panic!("alice in {detail}"));
    assert_eq!(alice_entry["place"], "/forum/1");
    assert!(alice_entry["last_seen"].is_string());
    demo.whos.shutdown().await.unwrap();
}

on_both_stacks!(
    login_flow,
    names_are_escaped,
    record_after_tick,
    forum_pages_and_the_admin_detail
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_logins_are_refused() {
    let demo = Demo::start(Stack::Memory).await;
    let too_long = "a".repeat(33);
    let refused = [
        username_form(""),
        username_form("   "),
        username_form(&too_long),
        username_form("a\u{7}b"),
        username_form("a\nb"),
        username_form("tab\there"),
        "".to_owned(),
        "name=alice".to_owned(),
    ];
    for body in &refused {
        let res = demo.post(ALICE_IP, "/login", body, None).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "body {body:?}");
        assert!(session_cookie(&res).is_none(), "body {body:?} set a cookie");
        let page = text(res).await;
        assert!(page.contains("<a href=\"/\">Back</a>"), "{page}");
    }

    // Not a form at all.
    let (mut parts, _) = common::request_from(ALICE_IP, "/login").into_parts();
    parts.method = Method::POST;
    parts
        .headers
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    let res = demo
        .send(Request::from_parts(
            parts,
            Body::from(r#"{"username":"x"}"#),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // The edges that are fine: 32 characters (even of 2 bytes each), padded names.
    demo.login(ALICE_IP, &"é".repeat(32)).await;
    let cookie = demo.login(OTHER_IP, "  bob  ").await;
    let page = demo.page(OTHER_IP, Some(&cookie)).await;
    assert!(page.contains("Logged in as <strong>bob</strong>"), "{page}");

    let online = demo.online_when(|o| o.user_count == 2).await;
    assert_eq!(online.users, ["bob".to_owned(), "é".repeat(32)]);

    demo.whos.shutdown().await.unwrap();
}

#[test]
fn config_from_the_environment() {
    let none = |_: &str| None;
    assert_eq!(
        DemoConfig::from_lookup(none).unwrap(),
        DemoConfig::default()
    );
    let defaults = DemoConfig::default();
    assert_eq!(defaults.bind, "127.0.0.1:3000");
    assert_eq!(defaults.window, Duration::from_secs(900));
    assert_eq!(defaults.tick_interval, Duration::from_secs(60));
    assert_eq!(defaults.prefix, "whos_online");
    assert_eq!((defaults.redis_url, defaults.database_url), (None, None));

    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let config = DemoConfig::from_lookup(env(&[
        ("BIND", "0.0.0.0:8080"),
        ("REDIS_URL", "redis://cache:6379"),
        ("DATABASE_URL", "postgres://db/app"),
        ("WHOS_ONLINE_WINDOW_SECS", "300"),
        ("WHOS_ONLINE_TICK_SECS", " 5 "),
        ("WHOS_ONLINE_PREFIX", "forum"),
        ("WHOS_ONLINE_CLIENT_IP_SOURCE", "RightmostXForwardedFor"),
        ("WHOS_ONLINE_VISITOR_SECRET", "s3cret"),
    ]))
    .unwrap();
    assert_eq!(config.visitor_secret.as_deref(), Some("s3cret"));
    assert_eq!(defaults.visitor_secret, None);
    assert_eq!(
        config.client_ip_source,
        ClientIpSource::RightmostXForwardedFor
    );
    assert_eq!(defaults.client_ip_source, ClientIpSource::ConnectInfo);
    assert_eq!(config.bind, "0.0.0.0:8080");
    assert_eq!(config.redis_url.as_deref(), Some("redis://cache:6379"));
    assert_eq!(config.database_url.as_deref(), Some("postgres://db/app"));
    assert_eq!(config.window, Duration::from_secs(300));
    assert_eq!(config.tick_interval, Duration::from_secs(5));
    assert_eq!(config.prefix, "forum");

    // Empty means unset.
    let config = DemoConfig::from_lookup(env(&[("REDIS_URL", ""), ("BIND", " ")])).unwrap();
    assert_eq!(config.redis_url, None);
    assert_eq!(config.bind, "127.0.0.1:3000");

    for (name, value) in [
        ("WHOS_ONLINE_WINDOW_SECS", "abc"),
        ("WHOS_ONLINE_WINDOW_SECS", "0"),
        ("WHOS_ONLINE_WINDOW_SECS", "-5"),
        ("WHOS_ONLINE_WINDOW_SECS", "18446744073709551615"),
        ("WHOS_ONLINE_TICK_SECS", "1.5"),
        ("WHOS_ONLINE_TICK_SECS", "0"),
        ("WHOS_ONLINE_CLIENT_IP_SOURCE", "x-forwarded-for"),
    ] {
        let lookup = |n: &str| (n == name).then(|| value.to_owned());
        let err = DemoConfig::from_lookup(lookup).unwrap_err();
        assert!(err.contains(name), "{err}");
    }
}

#[tokio::test]
async fn bad_settings_fail_with_a_message() {
    let config = DemoConfig {
        prefix: "has space".to_owned(),
        ..DemoConfig::default()
    };
    let err = demo::app(&config).await.expect_err("bad prefix refused");
    assert!(err.to_string().contains("WHOS_ONLINE_"), "{err}");
    assert!(err.to_string().contains("prefix"), "{err}");

    let config = DemoConfig {
        redis_url: Some("not a url".to_owned()),
        ..DemoConfig::default()
    };
    let err = demo::app(&config).await.expect_err("bad Redis URL refused");
    assert!(err.to_string().contains("REDIS_URL"), "{err}");

    let config = DemoConfig {
        database_url: Some(common::DEAD_POSTGRES.to_owned()),
        ..DemoConfig::default()
    };
    let err = demo::app(&config).await.expect_err("dead Postgres refused");
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
}

/// With `--features prometheus`: `/metrics` answers, and scrapes are not visitors.
#[cfg(feature = "prometheus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrapes_are_not_visitors() {
    let demo = Demo::start(Stack::Memory).await;
    let res = demo.get(OTHER_IP, "/metrics", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    demo.page(ALICE_IP, None).await;
    let online = demo.online_when(|o| o.visitor_count >= 1).await;
    assert_eq!(online.visitor_count, 1, "only the page view counts");
    demo.whos.shutdown().await.unwrap();
}
