//! Places: "users browsing this forum", on both stacks, through a router whose
//! layer names each request's place by axum's `MatchedPath`.

mod common;

use axum::routing::get;
use axum_whos_online::{Builder, OTHER_PLACE, User, identify_now, place_by_matched_path};
use common::{Site, Stack, request_from};
use tower::ServiceExt;

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn with_places(b: Builder) -> Builder {
    b.places(place_by_matched_path)
        .identify_users(identify_now(|req| {
            req.headers.get("x-user").map(|v| {
                User::new(v.to_str().unwrap()).with_hidden(req.headers.contains_key("x-hidden"))
            })
        }))
}

/// A forum site: the layer inside the router, so that `MatchedPath` is known.
fn forum(site: &Site) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { "home" }))
        .route("/forum/{id}", get(|| async { "forum" }))
        .route("/topic/{id}", get(|| async { "topic" }))
        .layer(site.whos.layer())
}

async fn get_as(app: &axum::Router, uri: &str, ip: &str, user: Option<&str>, agent: Option<&str>) {
    let mut req = request_from(ip, uri);
    if let Some(u) = user {
        req.headers_mut().insert("x-user", u.parse().unwrap());
    }
    if let Some(a) = agent {
        req.headers_mut()
            .insert(http::header::USER_AGENT, a.parse().unwrap());
    }
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);
}

/// Users, guests and bots are counted where their latest request was, by the
/// route template; a move within the de-dup resolution is seen at once; the
/// sum over places never exceeds the site's counts.
async fn members_are_counted_where_they_are(stack: Stack) {
    let site = Site::with(stack, with_places).await;
    let app = forum(&site);
    get_as(&app, "/forum/1", "10.1.0.1", Some("alice"), None).await;
    get_as(&app, "/forum/2", "10.1.0.2", Some("bob"), None).await;
    get_as(&app, "/topic/7", "10.1.0.3", Some("carol"), None).await;
    get_as(&app, "/forum/3", "10.1.0.4", None, None).await;
    get_as(&app, "/forum/3", "10.1.0.5", None, None).await;
    get_as(&app, "/", "10.1.0.6", None, None).await;
    get_as(&app, "/topic/1", "10.1.0.7", None, Some(GOOGLEBOT)).await;
    site.settle().await;

    let view = site.whos.view();
    let forum = view.online_in("/forum/{id}", 10);
    assert_eq!(forum.users, ["alice", "bob"]);
    assert_eq!(
        (forum.user_count, forum.visitor_count, forum.bot_count),
        (2, 2, 0)
    );
    let topic = site.whos.online_in("/topic/{id}", 10);
    assert_eq!(topic.users, ["carol"]);
    assert_eq!(
        (topic.user_count, topic.visitor_count, topic.bot_count),
        (1, 0, 1)
    );
    assert_eq!(topic.bots, ["Googlebot"]);
    let home = view.online_in("/", 10);
    assert_eq!((home.user_count, home.visitor_count), (0, 1));
    let nowhere = view.online_in("/nowhere", 10);
    assert_eq!(
        (nowhere.user_count, nowhere.visitor_count, nowhere.bot_count),
        (0, 0, 0)
    );
    // Busiest first.
    let names: Vec<&str> = view.places().iter().map(|p| p.place.as_str()).collect();
    assert_eq!(names, ["/forum/{id}", "/topic/{id}", "/"]);
    assert_eq!(view.place_of("carol"), Some("/topic/{id}"));
    sums_stay_within_the_counts(&view);

    // Alice moves to a topic a second later (well within the resolution):
    // her report is due because her place changed.
    site.clock.advance_secs(1);
    get_as(&app, "/topic/9", "10.1.0.1", Some("alice"), None).await;
    // A request that names no place (none here: every route matches) would
    // leave her where she is.
    site.settle().await;
    let view = site.whos.view();
    assert_eq!(view.online_in("/forum/{id}", 10).users, ["bob"]);
    assert_eq!(view.online_in("/topic/{id}", 10).users, ["alice", "carol"]);
    assert_eq!(view.online_in("/forum/{id}", 10).user_count, 1);
    sums_stay_within_the_counts(&view);

    // Places leave with the window; the tick prunes them.
    site.clock.advance_secs(901);
    site.whos.tick_now().await.unwrap();
    let view = site.whos.view();
    assert!(view.places().is_empty(), "{:?}", view.places());
    assert_eq!(view.online_in("/topic/{id}", 10).user_count, 0);
}

fn sums_stay_within_the_counts(view: &axum_whos_online::View) {
    let (mut users, mut visitors, mut bots) = (0, 0, 0);
    for p in view.places() {
        users += p.counts.users;
        visitors += p.counts.visitors;
        bots += p.counts.bots;
    }
    assert!(users <= view.user_count(), "{:?}", view.places());
    assert!(visitors <= view.visitor_count(), "{:?}", view.places());
    assert!(bots <= view.bot_count(), "{:?}", view.places());
}

/// Beyond `max_places` distinct places, members are counted under `other`
/// (and counted in `places_overflowed`); a known place still takes newcomers.
async fn places_beyond_the_cap_are_other(stack: Stack) {
    let site = Site::with(stack, |b| {
        with_places(b)
            .places(|req| Some(req.uri.path().to_owned()))
            .max_places(3)
    })
    .await;
    for i in 0..6 {
        site.visit(&format!("10.2.0.{i}")).await; // all at "/"
        let req = request_from(&format!("10.2.1.{i}"), &format!("/page/{i}"));
        let _ = site.send(req).await; // 404 for the host, still reported
        site.settle().await;
    }
    let view = site.whos.view();
    let names: Vec<&str> = view.places().iter().map(|p| p.place.as_str()).collect();
    assert_eq!(view.places().len(), 4, "{names:?}");
    assert!(names.contains(&OTHER_PLACE), "{names:?}");
    assert_eq!(view.online_in("/", 10).visitor_count, 6);
    assert_eq!(view.online_in(OTHER_PLACE, 10).visitor_count, 4);
    assert_eq!(site.whos.counters().places_overflowed, 4);
    sums_stay_within_the_counts(&view);
}

/// A user who logs out leaves their place at once; a guest who logs in is
/// counted at their place as a user, not also as a guest there.
async fn leaving_and_logging_in_move_places_too(stack: Stack) {
    let site = Site::with(stack, with_places).await;
    let app = forum(&site);
    get_as(&app, "/forum/1", "10.3.0.1", None, None).await;
    get_as(&app, "/forum/1", "10.3.0.2", Some("bob"), None).await;
    site.settle().await;
    assert_eq!(site.whos.online_in("/forum/{id}", 10).visitor_count, 1);
    site.clock.advance_secs(1);
    get_as(&app, "/forum/1", "10.3.0.1", Some("alice"), None).await;
    site.settle().await;
    let here = site.whos.online_in("/forum/{id}", 10);
    assert_eq!((here.user_count, here.visitor_count), (2, 0));
    site.whos.user_left("bob").await.unwrap();
    let here = site.whos.online_in("/forum/{id}", 10);
    assert_eq!(here.users, ["alice"]);
    assert_eq!(here.user_count, 1);
}

/// Without a hook, nothing is kept: no places, no keys.
async fn no_hook_no_places(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit_as("alice", "10.4.0.1").await;
    site.visit("10.4.0.2").await;
    site.settle().await;
    let view = site.whos.view();
    assert!(view.places().is_empty());
    assert_eq!(view.place_of("alice"), None);
    if stack == Stack::Real {
        assert!(
            common::redis_members(&site.prefix, "places")
                .await
                .is_empty()
        );
    }
}

/// `GET /online?place=P` and `GET /online/places` answer from the view; bad
/// queries are JSON 400s; an unknown place is 200 with zero counts.
async fn places_over_http(stack: Stack) {
    let site = Site::with(stack, with_places).await;
    let app = forum(&site).merge(site.whos.router());
    get_as(&app, "/forum/1", "10.5.0.1", Some("alice"), None).await;
    get_as(&app, "/forum/2", "10.5.0.2", None, None).await;
    get_as(&app, "/topic/2", "10.5.0.3", None, None).await;
    get_as(&app, "/topic/3", "10.5.0.4", None, Some(GOOGLEBOT)).await;
    site.settle().await;
    let get = |uri: &str| {
        let app = app.clone();
        let req = request_from("127.0.0.1", uri);
        async move {
            let res = app.oneshot(req).await.unwrap();
            let status = res.status();
            (status, common::json(res).await)
        }
    };
    let (status, body) = get("/online?place=%2Fforum%2F%7Bid%7D").await;
    assert_eq!(status, 200);
    assert_eq!(body["place"], "/forum/{id}");
    assert_eq!(body["users"], serde_json::json!(["alice"]));
    assert_eq!(
        (body["user_count"].as_u64(), body["visitor_count"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, body) = get("/online?place=/topic/{id}&limit=1").await;
    assert_eq!(body["bots"], serde_json::json!(["Googlebot"]));
    assert_eq!(
        (body["visitor_count"].as_u64(), body["bot_count"].as_u64()),
        (Some(1), Some(1))
    );
    let (status, body) = get("/online?place=nowhere").await;
    assert_eq!(status, 200);
    assert_eq!(body["user_count"], 0);
    assert_eq!(body["visitor_count"], 0);
    // Without a place: the whole site, and no `place` field.
    let (_, body) = get("/online").await;
    assert!(body.get("place").is_none(), "{body}");
    assert_eq!(body["visitor_count"], 2);

    let (status, body) = get("/online/places").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["places"],
        serde_json::json!([
            {"place": "/forum/{id}", "users": 1, "visitors": 1, "bots": 0},
            {"place": "/topic/{id}", "users": 0, "visitors": 1, "bots": 1},
        ])
    );
    let (_, body) = get("/online/places?limit=1").await;
    assert_eq!(body["places"].as_array().unwrap().len(), 1);

    let long = "x".repeat(129);
    for bad in [
        "/online?place=".to_owned(),
        format!("/online?place={long}"),
        "/online?place=a&place=b".to_owned(),
        "/online/places?limit=0".to_owned(),
        "/online/places?limit=1001".to_owned(),
        "/online/places?limit=x".to_owned(),
        "/online/places?place=a".to_owned(),
        "/online/events?place=a".to_owned(),
    ] {
        let (status, body) = get(&bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    // 128 bytes of a 3-byte character, percent-encoded: 384 bytes of query.
    let (status, _) = get(&format!("/online?place={}&limit=5", "%E2%82%AC".repeat(42))).await;
    assert_eq!(status, 200);
}

/// The member cap trims the least recently seen: they leave their places too,
/// so a place never counts more than the site.
async fn the_member_cap_trims_places_too(stack: Stack) {
    let site = Site::with(stack, |b| with_places(b).max_members(5)).await;
    let app = forum(&site);
    for i in 0..8 {
        get_as(&app, "/forum/1", &format!("10.6.0.{i}"), None, None).await;
        site.settle().await;
        site.clock.advance_secs(1);
    }
    let view = site.whos.view();
    assert_eq!(view.visitor_count(), 5);
    assert_eq!(view.online_in("/forum/{id}", 10).visitor_count, 5);
    sums_stay_within_the_counts(&view);
}

/// Who is where, for admins: served by the admin fragment only, behind the
/// host's own check; hidden users never named; bots by name and place.
async fn who_is_where_for_admins(stack: Stack) {
    use axum::{extract::Request, http::StatusCode, middleware::Next, response::Response};
    async fn admins_only(req: Request, next: Next) -> Result<Response, StatusCode> {
        match req.headers().get("x-role") {
            Some(role) if role == "admin" => Ok(next.run(req).await),
            _ => Err(StatusCode::FORBIDDEN),
        }
    }
    let site = Site::with(stack, with_places).await;
    let app = forum(&site).merge(site.whos.router()).nest(
        "/admin",
        site.whos
            .admin_router()
            .route_layer(axum::middleware::from_fn(admins_only)),
    );
    get_as(&app, "/forum/1", "10.7.0.1", Some("alice"), None).await;
    site.settle().await; // a write stamps its members with its own time
    site.clock.advance_secs(5);
    get_as(&app, "/topic/1", "10.7.0.2", Some("carol"), None).await;
    let mut hidden = request_from("10.7.0.3", "/forum/2");
    hidden
        .headers_mut()
        .insert("x-user", "ghost".parse().unwrap());
    hidden
        .headers_mut()
        .insert("x-hidden", "1".parse().unwrap());
    app.clone().oneshot(hidden).await.unwrap();
    get_as(&app, "/topic/4", "10.7.0.4", None, Some(GOOGLEBOT)).await;
    site.settle().await;

    let w = site.whos.who_is_where(10);
    let users: Vec<(&str, Option<&str>)> = w
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.place.as_deref()))
        .collect();
    assert_eq!(
        users,
        [
            ("carol", Some("/topic/{id}")),
            ("alice", Some("/forum/{id}"))
        ]
    );
    assert_eq!(
        w.users[1].last_seen.unwrap().timestamp() + 5,
        w.users[0].last_seen.unwrap().timestamp()
    );
    assert_eq!(w.counts.users, 3, "the hidden user is counted, never named");
    assert_eq!(w.bots.len(), 1);
    assert_eq!(
        (w.bots[0].name.as_str(), w.bots[0].place.as_deref()),
        ("Googlebot", Some("/topic/{id}"))
    );

    let send = |uri: &str, admin: bool| {
        let mut req = request_from("127.0.0.1", uri);
        if admin {
            req.headers_mut().insert("x-role", "admin".parse().unwrap());
        }
        app.clone().oneshot(req)
    };
    assert_eq!(
        send("/admin/online/detail", false).await.unwrap().status(),
        403
    );
    assert_eq!(
        send("/online/detail", true).await.unwrap().status(),
        404,
        "not public"
    );
    let res = send("/admin/online/detail?limit=1", true).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store, private");
    let body = common::json(res).await;
    assert_eq!(body["users"].as_array().unwrap().len(), 1);
    assert_eq!(body["users"][0]["name"], "carol");
    assert_eq!(body["users"][0]["place"], "/topic/{id}");
    assert!(body["users"][0]["last_seen"].is_string());
    assert_eq!(body["bots"][0]["name"], "Googlebot");
    assert_eq!(
        (body["user_count"].as_u64(), body["hidden_count"].as_u64()),
        (Some(3), Some(1))
    );
    assert!(!body.to_string().contains("ghost"));
    let res = send("/admin/online/detail?limit=0", true).await.unwrap();
    assert_eq!(res.status(), 400);
}

/// Two users who swap places in one write leave every count as it was; the
/// view still learns where each is now (the readers' cache is told).
async fn a_swap_in_one_write_is_seen(stack: Stack) {
    let site = Site::with(stack, |b| {
        with_places(b).places(|req| Some(req.uri.path().to_owned()))
    })
    .await;
    site.visit_as("alice", "10.8.0.1").await; // at "/"
    let mut bob = request_from("10.8.0.2", "/b");
    bob.headers_mut().insert("x-user", "bob".parse().unwrap());
    site.send(bob).await;
    site.settle().await;
    assert_eq!(site.whos.view().place_of("alice"), Some("/"));
    site.clock.advance_secs(1);
    let mut alice = request_from("10.8.0.1", "/b");
    alice
        .headers_mut()
        .insert("x-user", "alice".parse().unwrap());
    site.send(alice).await;
    site.visit_as("bob", "10.8.0.2").await; // to "/"
    site.settle().await;
    let view = site.whos.view();
    assert_eq!(view.place_of("alice"), Some("/b"));
    assert_eq!(view.place_of("bob"), Some("/"));
    assert_eq!(view.online_in("/b", 10).users, ["alice"]);
    assert_eq!(view.online_in("/", 10).users, ["bob"]);
}

on_both_stacks!(
    places_over_http,
    a_swap_in_one_write_is_seen,
    who_is_where_for_admins,
    the_member_cap_trims_places_too,
    members_are_counted_where_they_are,
    places_beyond_the_cap_are_other,
    leaving_and_logging_in_move_places_too,
    no_hook_no_places,
);
