//! Identities users can trust: bots, hidden users, route filters, proxy headers.

mod common;

use axum_whos_online::{BotFilter, ClientIpSource, HiddenUsers, User, identify_fn, identify_now};
use common::{Site, Stack, request_from};

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

async fn visit_with_agent(site: &Site, ip: &str, agent: &str) {
    let mut req = request_from(ip, "/");
    req.headers_mut()
        .insert("user-agent", agent.parse().unwrap());
    assert_eq!(site.send(req).await.status(), 200);
}

async fn bots_are_counted_apart_and_never_raise_the_record(stack: Stack) {
    let site = Site::new(stack).await;
    for i in 0..5 {
        visit_with_agent(&site, &format!("66.249.66.{i}"), GOOGLEBOT).await;
    }
    visit_with_agent(&site, "10.0.0.1", FIREFOX).await;
    // A logged-in user is a user whatever the agent says.
    let mut req = request_from("10.0.0.2", "/");
    req.headers_mut()
        .insert("user-agent", GOOGLEBOT.parse().unwrap());
    req.headers_mut().insert("x-user", "alice".parse().unwrap());
    site.send(req).await;
    site.settle().await;

    let (_, body) = site.get_json("/online").await;
    assert_eq!(body["bot_count"], 5);
    assert_eq!(body["visitor_count"], 1);
    assert_eq!(body["users"], serde_json::json!(["alice"]));

    site.settle().await;
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!(tick.counts.bots, 5);
    // The record counts one visitor (10.0.0.1) plus the /online poll (127.0.0.1).
    assert_eq!(tick.record.max_visitors, 2);
    assert_eq!(tick.record.max_users, 1);
    assert_eq!(site.whos.bot_count().await.unwrap(), 5);
}

async fn bot_filter_can_be_replaced_or_turned_off(stack: Stack) {
    let site = Site::with(stack, |b| b.bots(BotFilter::none())).await;
    visit_with_agent(&site, "66.249.66.1", GOOGLEBOT).await;
    site.settle().await;
    assert_eq!(site.whos.visitor_count().await.unwrap(), 1);
    assert_eq!(site.whos.bot_count().await.unwrap(), 0);

    let site = Site::with(stack, |b| b.bots(BotFilter::new(["firefox"]))).await;
    visit_with_agent(&site, "10.0.0.1", FIREFOX).await;
    visit_with_agent(&site, "66.249.66.1", GOOGLEBOT).await;
    site.settle().await;
    assert_eq!(site.whos.bot_count().await.unwrap(), 1);
    assert_eq!(site.whos.visitor_count().await.unwrap(), 1);
}

async fn hidden_users_are_counted_never_listed(stack: Stack) {
    let site = Site::with(stack, |b| {
        b.identify_users(identify_fn(|req| {
            let user = req.headers.get("x-user").map(|v| {
                User::new(v.to_str().unwrap()).with_hidden(req.headers.contains_key("x-hidden"))
            });
            async move { user }
        }))
    })
    .await;
    site.visit_as("alice", "10.0.0.1").await;
    let mut req = request_from("10.0.0.2", "/");
    req.headers_mut().insert("x-user", "ghost".parse().unwrap());
    req.headers_mut().insert("x-hidden", "1".parse().unwrap());
    site.send(req).await;
    site.settle().await;

    let (_, body) = site.get_json("/online").await;
    assert_eq!(body["users"], serde_json::json!(["alice"]));
    assert_eq!(body["user_count"], 2);
    assert!(!body.to_string().contains("ghost"));
    assert_eq!(site.whos.users_online(10).await.unwrap(), ["alice"]);
    assert_eq!(site.whos.user_count().await.unwrap(), 2);
    // Hidden users count toward the record.
    assert_eq!(site.whos.tick_now().await.unwrap().record.max_users, 2);
}

/// Hidden users counted as guests: `user_count` equals the listed names, so
/// nothing gives a hidden user away; they count toward the visitors' record.
async fn hidden_users_can_count_as_guests(stack: Stack) {
    let site = Site::with(stack, |b| {
        b.hidden_users(HiddenUsers::AsVisitors)
            .identify_users(identify_now(|req| {
                req.headers.get("x-user").map(|v| {
                    User::new(v.to_str().unwrap()).with_hidden(req.headers.contains_key("x-hidden"))
                })
            }))
    })
    .await;
    let hidden = |name: &'static str, ip: &'static str| {
        let mut req = request_from(ip, "/");
        req.headers_mut().insert("x-user", name.parse().unwrap());
        req.headers_mut().insert("x-hidden", "1".parse().unwrap());
        req
    };
    site.visit_as("alice", "10.0.0.1").await;
    site.visit_as("bob", "10.0.0.3").await;
    site.send(hidden("ghost", "10.0.0.2")).await;
    site.visit("10.0.0.9").await;
    site.settle().await;
    let body = common::fragment(&site.whos, "/online").await;
    assert_eq!(body["users"], serde_json::json!(["alice", "bob"]));
    assert_eq!(
        (body["user_count"].clone(), body["visitor_count"].clone()),
        (2.into(), 2.into())
    );
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!((tick.counts.users, tick.counts.visitors), (2, 2));
    assert_eq!((tick.record.max_users, tick.record.max_visitors), (2, 2));

    // bob turns hidden: he leaves the list and the user count together.
    site.clock.advance_secs(60);
    site.send(hidden("bob", "10.0.0.3")).await;
    site.settle().await;
    let online = site.whos.online(10).await.unwrap();
    assert_eq!(online.users, ["alice"]);
    assert_eq!((online.user_count, online.visitor_count), (1, 3));
}

async fn skipped_routes_are_not_reported(stack: Stack) {
    let site = Site::with(stack, |b| {
        b.skip_path_prefix("/static")
            .skip_if(|req| req.uri.path() == "/online")
    })
    .await;
    for uri in ["/static", "/static/app.css", "/online", "/online?limit=1"] {
        site.send(request_from("10.0.0.1", uri)).await;
    }
    site.send(request_from("10.0.0.2", "/statistics")).await;
    site.settle().await;
    let (_, body) = site.get_json("/online").await;
    // Only /statistics (a 404, but a request all the same) was reported.
    assert_eq!(body["visitor_count"], 1);
}

async fn repeated_and_spoofed_proxy_headers(stack: Stack) {
    // X-Real-IP is single-valued: repeated, it is ambiguous and the peer is used.
    let site = Site::with(stack, |b| b.client_ip_source(ClientIpSource::XRealIp)).await;
    let mut req = request_from("10.0.0.1", "/");
    req.headers_mut()
        .append("x-real-ip", "198.51.100.1".parse().unwrap());
    req.headers_mut()
        .append("x-real-ip", "198.51.100.2".parse().unwrap());
    site.send(req).await;
    let mut req = request_from("10.0.0.1", "/");
    req.headers_mut()
        .insert("x-real-ip", "198.51.100.3".parse().unwrap());
    site.send(req).await;
    site.settle().await;
    // The peer 10.0.0.1 and 198.51.100.3.
    assert_eq!(site.whos.visitor_count().await.unwrap(), 2);

    // X-Forwarded-For across repeated headers: the rightmost entry of the last
    // header is what our proxy appended; what the client sent is ignored.
    let site = Site::with(stack, |b| {
        b.client_ip_source(ClientIpSource::RightmostXForwardedFor)
    })
    .await;
    for spoof in ["1.1.1.1", "2.2.2.2", "3.3.3.3"] {
        let mut req = request_from("10.0.0.1", "/");
        req.headers_mut()
            .append("x-forwarded-for", spoof.parse().unwrap());
        req.headers_mut()
            .append("x-forwarded-for", "203.0.113.7".parse().unwrap());
        site.send(req).await;
    }
    site.settle().await;
    assert_eq!(site.whos.visitor_count().await.unwrap(), 1);
}

async fn forwarded_header_rightmost_element(stack: Stack) {
    // RFC 7239 Forwarded: the for= of the element our proxy appended, whatever
    // the client wrote before it, on the same line or on lines of its own.
    let site = Site::with(stack, |b| {
        b.client_ip_source(ClientIpSource::RightmostForwarded)
    })
    .await;
    for client_part in [r#"for="1.1.1.1"#, "for=2.2.2.2", r#"for="\"#, "garbage;;=,"] {
        let mut req = request_from("10.0.0.1", "/");
        req.headers_mut()
            .append("forwarded", client_part.parse().unwrap());
        req.headers_mut().append(
            "forwarded",
            format!(r#"{client_part}, for="[2001:db8::7]:4711";proto=https"#)
                .parse()
                .unwrap(),
        );
        site.send(req).await;
    }
    // No address in our element: the peer counts.
    let mut req = request_from("10.0.0.1", "/");
    req.headers_mut()
        .append("forwarded", "for=3.3.3.3, for=unknown".parse().unwrap());
    site.send(req).await;
    site.settle().await;
    // 2001:db8::7 (four times) and the peer 10.0.0.1.
    assert_eq!(site.whos.visitor_count().await.unwrap(), 2);
}

on_both_stacks!(
    forwarded_header_rightmost_element,
    hidden_users_can_count_as_guests,
    bots_are_counted_apart_and_never_raise_the_record,
    bot_filter_can_be_replaced_or_turned_off,
    hidden_users_are_counted_never_listed,
    skipped_routes_are_not_reported,
    repeated_and_spoofed_proxy_headers,
);

/// The `tower-sessions` adapter: the name under one key, "hidden" under another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_user_reads_name_and_hidden_flag() {
    use axum::routing::get;
    use tower::ServiceExt;
    use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

    let site = Site::with(Stack::Memory, |b| {
        b.identify_users(axum_whos_online::SessionUser::new("username").with_hidden_key("hidden"))
    })
    .await;
    let app = axum::Router::new()
        .route(
            "/login/{name}/{hidden}",
            get(
                |session: Session,
                 axum::extract::Path((name, hidden)): axum::extract::Path<(String, bool)>| async move {
                    session.insert("username", name).await.unwrap();
                    session.insert("hidden", hidden).await.unwrap();
                },
            ),
        )
        .route("/", get(|| async { "hi" }))
        .merge(site.whos.router())
        .layer(site.whos.layer())
        .layer(SessionManagerLayer::new(MemoryStore::default()));

    let mut cookies = Vec::new();
    for (i, (name, hidden)) in [("alice", false), ("ghost", true)].into_iter().enumerate() {
        let res = app
            .clone()
            .oneshot(request_from(
                &format!("10.0.0.{i}"),
                &format!("/login/{name}/{hidden}"),
            ))
            .await
            .unwrap();
        let cookie = res.headers()["set-cookie"].to_str().unwrap();
        cookies.push(cookie.split(';').next().unwrap().to_owned());
    }
    // The login requests themselves already count as the user: the session is
    // read after the handler ran.
    site.settle().await;
    let online = site.whos.online(10).await.unwrap();
    assert_eq!(online.users, ["alice"]);
    assert_eq!((online.user_count, online.visitor_count), (2, 0));

    let mut req = request_from("10.0.0.9", "/");
    req.headers_mut()
        .insert("cookie", cookies[1].parse().unwrap());
    app.clone().oneshot(req).await.unwrap();
    site.settle().await;
    let online = site.whos.online(10).await.unwrap();
    assert_eq!(
        (online.users.len(), online.user_count, online.visitor_count),
        (1, 2, 0)
    );
}

/// A session store that counts its loads.
#[derive(Debug, Clone, Default)]
struct CountingStore {
    inner: tower_sessions::MemoryStore,
    loads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl tower_sessions::SessionStore for CountingStore {
    async fn create(
        &self,
        record: &mut tower_sessions::session::Record,
    ) -> tower_sessions::session_store::Result<()> {
        self.inner.create(record).await
    }
    async fn save(
        &self,
        record: &tower_sessions::session::Record,
    ) -> tower_sessions::session_store::Result<()> {
        self.inner.save(record).await
    }
    async fn load(
        &self,
        id: &tower_sessions::session::Id,
    ) -> tower_sessions::session_store::Result<Option<tower_sessions::session::Record>> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.load(id).await
    }
    async fn delete(
        &self,
        id: &tower_sessions::session::Id,
    ) -> tower_sessions::session_store::Result<()> {
        self.inner.delete(id).await
    }
}

/// `SessionUser` loads a session once per resolution, not once per request:
/// 1,000 requests of one logged-in client to a route that never touches the
/// session cost one load (they cost 1,000 before). A new session (another
/// login) is looked up afresh, and a session whose user logged out stops
/// counting as that user once the resolution has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_user_loads_a_session_once_per_resolution() {
    use std::sync::atomic::Ordering::SeqCst;

    use axum::routing::get;
    use tower::ServiceExt;
    use tower_sessions::{Session, SessionManagerLayer};

    let site = Site::with(Stack::Memory, |b| {
        b.identify_users(axum_whos_online::SessionUser::new("username"))
    })
    .await;
    let store = CountingStore::default();
    let app = axum::Router::new()
        .route(
            "/login/{name}",
            get(
                |session: Session, axum::extract::Path(name): axum::extract::Path<String>| async move {
                    session.insert("username", name).await.unwrap();
                },
            ),
        )
        .route(
            "/logout",
            get(|session: Session| async move {
                session.remove::<String>("username").await.unwrap();
            }),
        )
        .route(
            "/end",
            get(|session: Session| async move {
                session.flush().await.unwrap();
            }),
        )
        .route("/asset", get(|| async { "body{}" }))
        .layer(site.whos.layer())
        .layer(SessionManagerLayer::new(store.clone()));
    let send = |uri: &str, cookie: Option<&str>| {
        let mut req = request_from("10.0.0.1", uri);
        if let Some(c) = cookie {
            req.headers_mut().insert("cookie", c.parse().unwrap());
        }
        let app = app.clone();
        async move {
            let res = app.oneshot(req).await.unwrap();
            assert_eq!(res.status(), 200);
            res.headers()
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .and_then(|c| c.split(';').next())
                .map(str::to_owned)
        }
    };
    let alice = send("/login/alice", None).await.expect("a session cookie");
    let before = store.loads.load(SeqCst);
    for _ in 0..1_000 {
        send("/asset", Some(&alice)).await;
    }
    let loads = store.loads.load(SeqCst) - before;
    println!("session loads per 1,000 requests of one logged-in client: {loads}");
    assert_eq!(loads, 1);
    site.settle().await;
    assert_eq!(site.whos.online(10).await.unwrap().users, ["alice"]);

    // A new session is looked up: one more load.
    let bob = send("/login/bob", None).await.expect("a session cookie");
    send("/asset", Some(&bob)).await;
    send("/asset", Some(&bob)).await;
    assert_eq!(store.loads.load(SeqCst) - before, 2);
    // Written now: every request here comes from one address, and a user's
    // report written with a visitor's of the same address is taken for the
    // same person (the visitor is dropped).
    site.settle().await;

    // Alice logs out but keeps her session: within the resolution she still
    // counts as alice (no load); after it, the session is read again and she
    // is a visitor.
    send("/logout", Some(&alice)).await;
    let after_logout = store.loads.load(SeqCst);
    send("/asset", Some(&alice)).await;
    assert_eq!(store.loads.load(SeqCst), after_logout);
    site.clock
        .advance_secs(axum_whos_online::DEFAULT_RESOLUTION.as_secs() as i64);
    send("/asset", Some(&alice)).await;
    assert_eq!(store.loads.load(SeqCst), after_logout + 1);
    send("/asset", Some(&alice)).await;
    assert_eq!(
        store.loads.load(SeqCst),
        after_logout + 2,
        "nobody is not remembered"
    );
    site.settle().await;
    assert_eq!(site.whos.online(10).await.unwrap().visitor_count, 1);

    // Bob's session is ended by the handler: forgotten at once, so his old
    // cookie, sent again, is read again (and is nobody's).
    send("/asset", Some(&bob)).await;
    let before_end = store.loads.load(SeqCst);
    send("/end", Some(&bob)).await;
    send("/asset", Some(&bob)).await;
    assert_eq!(store.loads.load(SeqCst), before_end + 1);
}
