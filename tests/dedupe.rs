//! The write path: a member handed on within the last `resolution` is not queued
//! again, on the injected clock, and nothing new is ever held back.

mod common;

use std::time::Duration;

use axum_whos_online::{User, identify_fn};
use common::{Site, Stack, request_from};

async fn busy_members_are_queued_once_per_resolution(stack: Stack) {
    let site = Site::new(stack).await;
    for _ in 0..50 {
        site.visit("10.0.0.1").await;
        site.visit_as("alice", "10.0.0.2").await;
    }
    site.settle().await;
    assert_eq!(site.whos.counters().reports_queued, 2);
    let online = site.whos.online(10).await.unwrap();
    assert_eq!((online.user_count, online.visitor_count), (1, 1));

    // The default resolution is 30 s: a member stays fresh for 23 to 30 s of it
    // (a fixed part per member, so that members seen together fall due apart).
    site.clock.advance_secs(22);
    site.visit("10.0.0.1").await;
    site.visit_as("alice", "10.0.0.2").await;
    site.settle().await;
    assert_eq!(site.whos.counters().reports_queued, 2);
    site.clock.advance_secs(8);
    site.visit("10.0.0.1").await;
    site.visit_as("alice", "10.0.0.2").await;
    site.settle().await;
    assert_eq!(site.whos.counters().reports_queued, 4);
}

async fn new_members_are_never_held_back(stack: Stack) {
    let site = Site::new(stack).await;
    let app = site.app();
    for pass in 0..2 {
        for i in 0..3000u32 {
            let ip = format!("10.{}.{}.{}", 100 + pass, i / 250, i % 250);
            let res = tower::ServiceExt::oneshot(app.clone(), request_from(&ip, "/"))
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
        // Again: all of them fresh now, none queued twice.
        for i in 0..3000u32 {
            let ip = format!("10.{}.{}.{}", 100 + pass, i / 250, i % 250);
            tower::ServiceExt::oneshot(app.clone(), request_from(&ip, "/"))
                .await
                .unwrap();
        }
    }
    site.settle().await;
    assert_eq!(site.whos.counters().reports_queued, 6000);
    assert_eq!(site.whos.online(1).await.unwrap().visitor_count, 6000);
}

/// A user who turns hidden (or back) within the resolution is written at once:
/// the latest report decides.
async fn hiding_goes_through_within_the_resolution(stack: Stack) {
    let site = Site::with(stack, |b| {
        b.identify_users(identify_fn(|req| {
            let hidden = req.headers.contains_key("x-hidden");
            let user = req
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(|name| User::new(name).with_hidden(hidden));
            async move { user }
        }))
    })
    .await;
    let view = |hidden: bool| {
        let mut req = request_from("10.0.0.1", "/");
        req.headers_mut().insert("x-user", "alice".parse().unwrap());
        if hidden {
            req.headers_mut().insert("x-hidden", "1".parse().unwrap());
        }
        site.send(req)
    };
    view(false).await;
    site.settle().await;
    assert_eq!(site.whos.online(10).await.unwrap().users, ["alice"]);
    view(true).await;
    view(true).await;
    site.settle().await;
    let online = site.whos.online(10).await.unwrap();
    assert!(online.users.is_empty());
    assert_eq!(online.user_count, 1);
    view(false).await;
    site.settle().await;
    assert_eq!(site.whos.online(10).await.unwrap().users, ["alice"]);
    assert_eq!(site.whos.counters().reports_queued, 3);
}

async fn resolution_zero_queues_every_report(stack: Stack) {
    let site = Site::with(stack, |b| b.resolution(Duration::ZERO)).await;
    for _ in 0..10 {
        site.visit("10.0.0.1").await;
    }
    site.settle().await;
    assert_eq!(site.whos.counters().reports_queued, 10);
    assert_eq!(site.whos.online(1).await.unwrap().visitor_count, 1);
}

async fn resolution_is_capped_at_a_tenth_of_the_window(stack: Stack) {
    let site = Site::with(stack, |b| {
        b.window(Duration::from_secs(60))
            .resolution(Duration::from_secs(300))
    })
    .await;
    // A tenth of 60 s is 6 s: fresh at 4 s, due at 6 s.
    site.visit("10.0.0.1").await;
    site.clock.advance_secs(4);
    site.visit("10.0.0.1").await;
    site.clock.advance_secs(2);
    site.visit("10.0.0.1").await;
    site.settle().await;
    assert_eq!(site.whos.counters().reports_queued, 2);
}

/// A burst of more distinct members than `max_pending` between two flushes is
/// written in parts as it comes, not dropped.
async fn a_full_pending_list_is_written_at_once(stack: Stack) {
    let site = Site::with(stack, |b| {
        b.max_pending(3).flush_interval(Duration::from_secs(3600))
    })
    .await;
    for i in 1..=10 {
        site.visit(&format!("10.0.0.{i}")).await;
    }
    site.settle().await;
    let c = site.whos.counters();
    assert_eq!((c.reports_queued, c.pending_dropped), (10, 0));
    // Written when the 4th, 7th and 10th arrived, and the last one by `flush`.
    assert_eq!((c.flushes, c.members_written), (4, 10));
    assert_eq!(site.whos.online(1).await.unwrap().visitor_count, 10);
}

on_both_stacks!(
    a_full_pending_list_is_written_at_once,
    busy_members_are_queued_once_per_resolution,
    new_members_are_never_held_back,
    hiding_goes_through_within_the_resolution,
    resolution_zero_queues_every_report,
    resolution_is_capped_at_a_tenth_of_the_window,
);

/// In Redis, a busy user's score moves once per resolution, to the time of the
/// flush that wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_move_once_per_resolution() {
    let site = Site::new(Stack::Real).await;
    let t0 = axum_whos_online::Clock::unix_secs(&site.clock);
    let pool = axum_whos_online::redis_pool(&common::redis_url()).unwrap();
    let score = || {
        let pool = pool.clone();
        let key = format!("{{{}}}:users", site.prefix);
        async move {
            let mut conn = pool.get().await.unwrap();
            deadpool_redis::redis::cmd("ZSCORE")
                .arg(key)
                .arg("alice")
                .query_async::<Option<i64>>(&mut conn)
                .await
                .unwrap()
        }
    };
    site.visit_as("alice", "10.0.0.1").await;
    site.settle().await;
    assert_eq!(score().await, Some(t0));
    site.clock.advance_secs(20);
    site.visit_as("alice", "10.0.0.1").await;
    site.settle().await;
    assert_eq!(score().await, Some(t0));
    site.clock.advance_secs(10);
    site.visit_as("alice", "10.0.0.1").await;
    site.settle().await;
    assert_eq!(score().await, Some(t0 + 30));
}

/// A report the reporter has to drop (Redis down, too many pending) is
/// forgotten, so the member's next request is queued again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_dropped_while_redis_is_down_is_queued_again() {
    let site = Site::with(Stack::Real, |b| {
        // Scheduled writes keep failing and re-queue the same two members; a
        // flush waits for the next of them, so the interval stays short.
        b.redis(common::dead_redis())
            .max_pending(2)
            .flush_interval(Duration::from_millis(200))
    })
    .await;
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        site.visit(ip).await;
    }
    // The write fails, and the flush says so.
    assert!(site.whos.flush().await.is_err());
    let c = site.whos.counters();
    assert_eq!((c.reports_queued, c.pending_dropped), (3, 1));
    // The two pending ones are still fresh; the dropped one is due again (the
    // layer counts what it queues as it queues it).
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        site.visit(ip).await;
    }
    assert_eq!(site.whos.counters().reports_queued, 4);
}
