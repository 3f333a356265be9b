//! Leaving and last seen: `WhosOnline::user_left` for a logout handler, and
//! `WhosOnline::last_seen` for a profile page, on both stacks.

mod common;

use axum_whos_online::{User, identify_now};
use common::{ClockExt, Site, Stack, request_from};

/// Users by `x-user`, hidden with `x-hidden`.
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

/// A user who logs out leaves the list (and the count) at once, a hidden one
/// the count; the others stay.
async fn a_user_who_leaves_is_gone_at_once(stack: Stack) {
    let site = Site::with(stack, with_hidden).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.visit_as("bob", "10.0.0.2").await;
    visit_hidden(&site, "ghost", "10.0.0.3").await;
    site.settle().await;
    assert_eq!(site.whos.view().user_count(), 3);

    site.whos.user_left("alice").await.unwrap();
    let view = site.whos.view();
    assert_eq!(view.users(), ["bob"]);
    assert_eq!((view.user_count(), view.hidden_count()), (2, 1));
    site.whos.user_left("ghost").await.unwrap();
    assert_eq!(site.whos.view().user_count(), 1);
    // Gone from the store too, not only from this instance's view.
    site.whos.tick_now().await.unwrap();
    assert_eq!(site.whos.view().users(), ["bob"]);
    assert_eq!(site.whos.last_seen("alice").await.unwrap(), None);
    // Leaving twice, or someone never seen: nothing happens.
    site.whos.user_left("alice").await.unwrap();
    site.whos.user_left("nobody").await.unwrap();
    assert_eq!(site.whos.view().user_count(), 1);
}

/// Reports of requests made before the logout (one still queued, and the
/// logout request's own, reported once its response is sent) do not bring the
/// user back; a request after the grace does.
async fn reports_from_before_the_logout_do_not_bring_them_back(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.settle().await;
    // Past the de-dup resolution, so that her next requests are reported.
    site.clock.advance_secs(40);
    site.visit_as("alice", "10.0.0.1").await; // queued, not written yet
    site.whos.user_left("alice").await.unwrap();
    site.visit_as("alice", "10.0.0.1").await; // the logout request itself
    site.settle().await;
    assert!(site.whos.view().users().is_empty());

    // Logged in again, a few seconds later: listed again.
    site.clock.advance_secs(3);
    site.visit_as("alice", "10.0.0.1").await;
    site.settle().await;
    assert_eq!(site.whos.view().users(), ["alice"]);
}

/// `last_seen`: from the view when it lists the user, else from the store;
/// `None` for a hidden user or one never seen.
async fn last_seen_for_a_profile_page(stack: Stack) {
    for names in [1_000, 0] {
        let site = Site::with(stack, move |b| with_hidden(b).view_names(names)).await;
        let t0 = site.clock.now_for_test();
        site.visit_as("alice", "10.0.0.1").await;
        visit_hidden(&site, "ghost", "10.0.0.3").await;
        site.settle().await;
        site.clock.advance_secs(300);
        let t1 = site.clock.now_for_test();
        site.visit_as("bob", "10.0.0.2").await;
        site.settle().await;
        assert_eq!(
            site.whos.last_seen("alice").await.unwrap(),
            Some(t0),
            "{names}"
        );
        assert_eq!(
            site.whos.last_seen("bob").await.unwrap(),
            Some(t1),
            "{names}"
        );
        assert_eq!(site.whos.last_seen("ghost").await.unwrap(), None, "{names}");
        assert_eq!(
            site.whos.last_seen("nobody").await.unwrap(),
            None,
            "{names}"
        );
    }
}

on_both_stacks!(
    a_user_who_leaves_is_gone_at_once,
    reports_from_before_the_logout_do_not_bring_them_back,
    last_seen_for_a_profile_page,
);
