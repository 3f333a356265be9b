//! The daily history: peaks raised by every tick and never lowered, distinct
//! users and visitors per UTC day (HyperLogLog in Redis, exact in memory),
//! retention, sites apart in one database, the record of before adopted, and
//! `GET /stats/history` with its errors.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum_whos_online::{
    Batch, Day, Error, HistoryStore, MIGRATIONS, MemoryRecord, PostgresRecord, PresenceStore,
    RecordStore, WhosOnline,
};
use chrono::{DateTime, NaiveDate, Utc};
use common::{ClockExt, Site, Stack, request_from};
use http::StatusCode;

/// 2025-11-24 16:00:00 UTC, where every test site's clock starts.
const START: i64 = 1_764_000_000;
/// Seconds from `START` to the next midnight.
const TO_MIDNIGHT: i64 = 8 * 3600;

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// A crawler's page view from `ip`.
async fn bot_visit(site: &Site, ip: &str) {
    let mut req = request_from(ip, "/");
    req.headers_mut().insert(
        "user-agent",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
            .parse()
            .unwrap(),
    );
    assert_eq!(site.send(req).await.status(), 200);
}

/// Writes what is queued, ticks, and returns the history of `days` days.
async fn tick(site: &Site, days: u32) -> Vec<Day> {
    site.whos.flush().await.unwrap();
    site.whos.tick_now().await.unwrap();
    site.whos.history(days).unwrap().days
}

/// Asserts that no count of any day went down from `before` to `after`.
fn never_lowered(before: &[Day], after: &[Day]) {
    for b in before {
        let Some(a) = after.iter().find(|a| a.day == b.day) else {
            continue;
        };
        for (name, was, is) in [
            ("max_users", b.max_users, a.max_users),
            ("max_visitors", b.max_visitors, a.max_visitors),
            ("max_bots", b.max_bots, a.max_bots),
            ("distinct_users", b.distinct_users, a.distinct_users),
            (
                "distinct_visitors",
                b.distinct_visitors,
                a.distinct_visitors,
            ),
        ] {
            assert!(is >= was, "{} {name} went from {was} to {is}", b.day);
        }
    }
}

/// Peaks of every kind and distinct people, through a day change: a peak stays
/// when the counts fall, the same person seen twice is one, a person seen
/// after the day's last tick still counts for that day, and the next day
/// starts from zero.
async fn peaks_and_distinct_people_by_day(stack: Stack) {
    let site = Site::new(stack).await;
    let start: DateTime<Utc> = site.clock.now_for_test();
    site.visit_as("alice", "10.1.0.1").await;
    site.visit_as("bob", "10.1.0.2").await;
    for ip in ["10.2.0.1", "10.2.0.2", "10.2.0.3"] {
        site.visit(ip).await;
    }
    bot_visit(&site, "66.249.66.1").await;
    let first = tick(&site, 2).await;
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], Day::empty(day("2025-11-23")));
    let today = first[1];
    assert_eq!(today.day, day("2025-11-24"));
    assert_eq!(
        (today.max_users, today.max_visitors, today.max_bots),
        (2, 3, 1)
    );
    assert_eq!(today.max_users_at, Some(start));
    assert_eq!(today.max_bots_at, Some(start));
    assert_eq!((today.distinct_users, today.distinct_visitors), (2, 3));

    // An hour on, the first crowd has left: alice and one visitor are back,
    // one visitor is new. The peaks stay; distinct people grow by one.
    site.clock.advance_secs(3600);
    site.visit_as("alice", "10.1.0.1").await;
    site.visit("10.2.0.1").await;
    site.visit("10.2.0.9").await;
    let later = tick(&site, 2).await;
    never_lowered(&first, &later);
    let today = later[1];
    assert_eq!(
        (today.max_users, today.max_visitors, today.max_bots),
        (2, 3, 1)
    );
    assert_eq!(
        today.max_users_at,
        Some(start),
        "a peak keeps its first time"
    );
    assert_eq!((today.distinct_users, today.distinct_visitors), (2, 4));

    // Seen after the day's last tick, before midnight: still that day's.
    site.clock.set_unix(START + TO_MIDNIGHT - 30);
    site.visit_as("dave", "10.1.0.4").await;
    site.whos.flush().await.unwrap();
    // The next day: carol and a new visitor.
    site.clock.set_unix(START + TO_MIDNIGHT + 30);
    site.visit_as("carol", "10.1.0.3").await;
    site.visit("10.2.0.20").await;
    let next = tick(&site, 2).await;
    never_lowered(&later, &next);
    let (yesterday, today) = (next[0], next[1]);
    assert_eq!(yesterday.day, day("2025-11-24"));
    assert_eq!(
        (yesterday.distinct_users, yesterday.distinct_visitors),
        (3, 4),
        "dave, seen after the last tick of his day, counts for it"
    );
    assert_eq!(today.day, day("2025-11-25"));
    assert_eq!((today.distinct_users, today.distinct_visitors), (1, 1));
    // dave is still within the window just after midnight: two users online.
    assert_eq!((today.max_users, today.max_visitors), (2, 1));

    // The same over HTTP, oldest first, with `as_of`.
    let (status, body) = site.get_json("/stats/history?days=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["days"], serde_json::to_value(&next).unwrap());
    assert_eq!(body["days"][1]["day"], "2025-11-25");
    assert!(body["as_of"].is_string());
    site.whos.shutdown().await.unwrap();
}

/// Today's entry is never below the counts of the view, even between ticks.
async fn today_is_never_below_the_view(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit("10.3.0.1").await;
    let before = tick(&site, 1).await;
    assert_eq!(before[0].max_visitors, 1);
    site.visit("10.3.0.2").await;
    site.visit("10.3.0.3").await;
    site.settle().await;
    assert_eq!(site.whos.view().visitor_count(), 3);
    let today = site.whos.history(1).unwrap().days[0];
    assert_eq!(today.max_visitors, 3, "{today:?}");
    site.whos.shutdown().await.unwrap();
}

/// A peak the view saw between two ticks, gone by the next tick, still reaches
/// the day's row, with the time it was first seen (the record's time too), and
/// that time does not move while the peak holds; one seen just before
/// midnight reaches the day that ended.
async fn a_peak_between_ticks_is_kept_with_its_time(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit("10.10.0.1").await;
    assert_eq!(tick(&site, 1).await[0].max_visitors, 1);

    site.clock.advance_secs(10);
    let first_seen = site.clock.now_for_test();
    site.visit("10.10.0.2").await;
    site.visit("10.10.0.3").await;
    site.settle().await;
    let today = site.whos.history(1).unwrap().days[0];
    assert_eq!(
        (today.max_visitors, today.max_visitors_at),
        (3, Some(first_seen))
    );
    site.clock.advance_secs(5);
    site.whos.refresh_now().await.unwrap();
    let again = site.whos.history(1).unwrap().days[0];
    assert_eq!(again, today, "the time of a peak that holds does not move");

    // All gone by the next tick: the tick writes the peak it did not see.
    site.clock.advance_secs(16 * 60);
    let written = tick(&site, 1).await[0];
    assert_eq!(site.whos.view().visitor_count(), 0);
    assert_eq!(
        (written.max_visitors, written.max_visitors_at),
        (3, Some(first_seen))
    );
    let record = site.whos.view().record();
    assert_eq!(record.max_visitors_date, Some(first_seen));
    if let Some(pg) = &site.pg {
        let row: (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT max_visitors, max_visitors_at FROM whos_online_day WHERE site = $1",
        )
        .bind(&site.prefix)
        .fetch_one(pg)
        .await
        .unwrap();
        assert_eq!(row, (3, Some(first_seen)));
    }

    // Four more just before midnight, seen by a refresh, never by a tick of
    // their day: the first tick of the next day writes them to the day before.
    site.clock.set_unix(START + TO_MIDNIGHT - 30);
    for i in 0..4 {
        site.visit(&format!("10.10.1.{i}")).await;
    }
    site.settle().await;
    site.clock.set_unix(START + TO_MIDNIGHT + 30);
    site.whos.refresh_now().await.unwrap();
    let days = tick(&site, 2).await;
    assert_eq!(days[0].day, day("2025-11-24"));
    assert_eq!(days[0].max_visitors, 4, "{days:?}");
    assert_eq!(days[1].max_visitors, 4, "still online after midnight");
    site.whos.shutdown().await.unwrap();
}

/// `history_days(3)`: after five daily ticks three days are left, and the
/// retention runs once a day however often the site ticks.
async fn retention_keeps_history_days(stack: Stack) {
    let site = Site::with(stack, |b| b.history_days(3)).await;
    for d in 0..5 {
        site.clock.set_unix(START + d * 86_400);
        site.visit(&format!("10.4.0.{d}")).await;
        tick(&site, 10).await;
        tick(&site, 10).await;
    }
    assert_eq!(site.whos.counters().history_retentions, 5);
    let kept: Vec<NaiveDate> = site
        .whos
        .history(10)
        .unwrap()
        .days
        .iter()
        .filter(|d| d.max_visitors > 0)
        .map(|d| d.day)
        .collect();
    assert_eq!(
        kept,
        [day("2025-11-26"), day("2025-11-27"), day("2025-11-28")]
    );
    if let Some(pg) = &site.pg {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM whos_online_day WHERE site = $1")
            .bind(&site.prefix)
            .fetch_one(pg)
            .await
            .unwrap();
        assert_eq!(rows, 3);
    }
    site.whos.shutdown().await.unwrap();
}

/// The parameters of `/stats/history`: a JSON 400 for everything but 1 to 366
/// days, named once; the default is 30 days; a strong ETag and 304.
async fn bad_queries_get_a_json_400(stack: Stack) {
    let site = Site::new(stack).await;
    site.whos.tick_now().await.unwrap();
    for query in [
        "days=0",
        "days=367",
        "days=abc",
        "days=-1",
        "days=1.5",
        "days=",
        "days=1&days=2",
        "day=3",
        "days=3&limit=2",
    ] {
        let (status, body) = site.get_json(&format!("/stats/history?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["error"].is_string(), "{query}: {body}");
    }
    let (status, body) = site.get_json("/stats/history").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["days"].as_array().unwrap().len(), 30);
    let (_, body) = site.get_json("/stats/history?days=366").await;
    assert_eq!(body["days"].as_array().unwrap().len(), 366);

    let res = site.send(request_from("127.0.0.1", "/stats/history")).await;
    let etag = res.headers()["etag"].clone();
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    let mut again = request_from("127.0.0.1", "/stats/history");
    again.headers_mut().insert("if-none-match", etag.clone());
    assert_eq!(site.send(again).await.status(), StatusCode::NOT_MODIFIED);
    // A new peak changes the body, and so the tag.
    site.visit("10.5.0.1").await;
    tick(&site, 1).await;
    let res = site.send(request_from("127.0.0.1", "/stats/history")).await;
    assert_ne!(res.headers()["etag"], etag);
    assert!(matches!(
        site.whos.history(0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        site.whos.history(367),
        Err(Error::InvalidArgument(_))
    ));
    site.whos.shutdown().await.unwrap();
}

/// Hidden users are distinct users by default, and distinct visitors when
/// counted as visitors: the day's counts follow `hidden_users` as the live
/// counts do, so no difference between them gives a hidden user away.
async fn hidden_users_count_where_the_counts_put_them(stack: Stack) {
    for (how, users, visitors) in [
        (axum_whos_online::HiddenUsers::AsUsers, 2, 2),
        (axum_whos_online::HiddenUsers::AsVisitors, 1, 3),
    ] {
        let site = Site::with(stack, |b| {
            b.hidden_users(how)
                .identify_users(axum_whos_online::identify_now(|req| {
                    let name = req.headers.get("x-user")?.to_str().ok()?.to_owned();
                    Some(match name.strip_prefix("hidden-") {
                        Some(_) => axum_whos_online::User::hidden(name),
                        None => axum_whos_online::User::new(name),
                    })
                }))
        })
        .await;
        site.visit_as("alice", "10.8.0.1").await;
        site.visit_as("hidden-bob", "10.8.0.2").await;
        site.visit("10.8.0.3").await;
        site.visit("10.8.0.4").await;
        let today = tick(&site, 1).await[0];
        assert_eq!(
            (today.distinct_users, today.distinct_visitors),
            (users, visitors),
            "{how:?}"
        );
        assert_eq!((today.max_users, today.max_visitors), (users, visitors));
        site.whos.shutdown().await.unwrap();
    }
}

on_both_stacks!(
    a_peak_between_ticks_is_kept_with_its_time,
    hidden_users_count_where_the_counts_put_them,
    peaks_and_distinct_people_by_day,
    today_is_never_below_the_view,
    retention_keeps_history_days,
    bad_queries_get_a_json_400,
);

/// Concurrent raisers of one day, on the Postgres store and the memory one:
/// every count ends at the highest raised, its time is one that carried that
/// count, and no raiser ever reads a count lower than one it read before.
async fn concurrent_raises_never_lower(store: Arc<dyn HistoryStore>) {
    let the_day = day("2026-12-01");
    let base: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut seen_before = Vec::new();
            let mut raised = Vec::new();
            for i in 0..40u64 {
                // A different order of values in each task.
                let v = (i * 7 + t * 13) % 97;
                let at = base + chrono::Duration::seconds((t * 1000 + i) as i64);
                let d = Day {
                    distinct_users: v * 3,
                    distinct_visitors: v * 5,
                    ..Day::seen(v, v * 2, v % 11, at)
                };
                raised.push(d);
                let read = store.raise_days(&[d], None, the_day).await.unwrap();
                assert_eq!(read.len(), 1);
                never_lowered(&seen_before, &read);
                seen_before = read;
            }
            raised
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let stored = store.raise_days(&[], None, the_day).await.unwrap()[0];
    let max = |f: fn(&Day) -> u64| all.iter().map(f).max().unwrap();
    assert_eq!(stored.max_users, max(|d| d.max_users));
    assert_eq!(stored.max_visitors, max(|d| d.max_visitors));
    assert_eq!(stored.max_bots, max(|d| d.max_bots));
    assert_eq!(stored.distinct_users, max(|d| d.distinct_users));
    assert_eq!(stored.distinct_visitors, max(|d| d.distinct_visitors));
    assert!(
        all.iter()
            .any(|d| d.max_users == stored.max_users && d.max_users_at == stored.max_users_at)
    );
    assert!(
        all.iter()
            .any(|d| d.max_bots == stored.max_bots && d.max_bots_at == stored.max_bots_at)
    );
}

/// A day given twice in one call is merged, by both stores alike.
async fn a_day_given_twice_is_merged(store: Arc<dyn HistoryStore>) {
    let at: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
    let later: DateTime<Utc> = "2026-12-01T11:00:00Z".parse().unwrap();
    let twice = [Day::seen(3, 1, 0, at), Day::seen(1, 4, 2, later)];
    let days = store
        .raise_days(&twice, None, day("2026-12-01"))
        .await
        .unwrap();
    assert_eq!(days.len(), 1);
    let d = days[0];
    assert_eq!((d.max_users, d.max_visitors, d.max_bots), (3, 4, 2));
    assert_eq!((d.max_users_at, d.max_visitors_at), (Some(at), Some(later)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_given_twice_is_merged_in_both_stores() {
    let pool = common::migrated_database().await;
    a_day_given_twice_is_merged(Arc::new(PostgresRecord::new(pool).with_site("a"))).await;
    a_day_given_twice_is_merged(Arc::new(MemoryRecord::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_raises_never_lower_a_day_in_postgres() {
    let pool = common::migrated_database().await;
    concurrent_raises_never_lower(Arc::new(PostgresRecord::new(pool).with_site("a"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_raises_never_lower_a_day_in_memory() {
    concurrent_raises_never_lower(Arc::new(MemoryRecord::new())).await;
}

/// Two instances of one site ticking at the same moments, while the crowd
/// grows and shrinks: the day's peak, as either instance reads it, never goes
/// down, and ends at the highest count any tick saw, with its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_ticking_at_once_never_lower_a_day() {
    let a = Site::new(Stack::Real).await;
    let pg = a.pg.clone().unwrap();
    let b = Site::with(Stack::Real, |builder| {
        builder
            .prefix(&a.prefix)
            .clock(a.clock.clone())
            .postgres(pg.clone())
    })
    .await;
    let mut highest = (0, None);
    let mut before: Vec<Day> = Vec::new();
    for (round, crowd) in [3u32, 7, 2, 9, 4, 9, 1].into_iter().enumerate() {
        for i in 0..crowd {
            let ip = format!("10.9.{round}.{i}");
            if i % 2 == 0 {
                a.visit(&ip).await
            } else {
                b.visit(&ip).await
            }
        }
        a.whos.flush().await.unwrap();
        b.whos.flush().await.unwrap();
        let (ta, tb) = tokio::join!(a.whos.tick_now(), b.whos.tick_now());
        for t in [ta.unwrap(), tb.unwrap()] {
            assert_eq!(t.counts.visitors, u64::from(crowd));
        }
        if u64::from(crowd) > highest.0 {
            highest = (u64::from(crowd), Some(a.clock.now_for_test()));
        }
        for site in [&a, &b] {
            let days = site.whos.history(1).unwrap().days;
            never_lowered(&before, &days);
            before = days;
        }
        // The next crowd comes after this one has left.
        a.clock.advance_secs(16 * 60);
    }
    let today = PostgresRecord::new(pg)
        .with_site(&a.prefix)
        .raise_days(&[], None, day("2025-11-24"))
        .await
        .unwrap()[0];
    assert_eq!((today.max_visitors, today.max_visitors_at), highest);
    // 35 pseudonyms (random per day secret) in a HyperLogLog of 16,384
    // registers: two share a register about 4% of the time, and the estimate
    // is then 34. Small counts are exact but for such collisions.
    assert!(
        today.distinct_visitors.abs_diff(35) <= 1,
        "{}",
        today.distinct_visitors
    );
    a.whos.shutdown().await.unwrap();
    b.whos.shutdown().await.unwrap();
}

/// Two sites with different prefixes in one database: each has its own
/// record and its own history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sites_in_one_database_keep_their_own() {
    let pool = common::migrated_database().await;
    let mut sites = Vec::new();
    for _ in 0..2 {
        let prefix = common::prefix();
        let clock = axum_whos_online::ManualClock::at_unix(START);
        let whos = WhosOnline::builder()
            .clock(clock.clone())
            .prefix(&prefix)
            .background_ticker(false)
            .background_refresh(false)
            .server_time(false)
            .redis(axum_whos_online::redis_pool(&common::redis_url()).unwrap())
            .postgres(pool.clone())
            .build()
            .unwrap();
        sites.push(Site {
            whos,
            clock,
            prefix,
            pg: Some(pool.clone()),
        });
    }
    for ip in ["10.6.0.1", "10.6.0.2", "10.6.0.3"] {
        sites[0].visit(ip).await;
    }
    sites[1].visit("10.6.1.1").await;
    let a = tick(&sites[0], 1).await[0];
    let b = tick(&sites[1], 1).await[0];
    assert_eq!((a.max_visitors, b.max_visitors), (3, 1));
    assert_eq!((a.distinct_visitors, b.distinct_visitors), (3, 1));
    assert_eq!(sites[0].whos.view().record().max_visitors, 3);
    assert_eq!(sites[1].whos.view().record().max_visitors, 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM whos_online_site_record")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
    for s in sites {
        s.whos.shutdown().await.unwrap();
    }
}

/// A database from before per-site records (migrations 1 and 2, one record
/// row, which every site shared): after `migrate`, each site starts from that
/// record, whole, even one whose reads are all served by a warm Redis cache;
/// a site with a record of its own keeps it; the old table is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_site_starts_from_the_record_of_before() {
    let pool = common::fresh_database().await;
    for (_, _, sql) in &MIGRATIONS[..2] {
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    }
    let when: DateTime<Utc> = "2024-05-01T12:00:00Z".parse().unwrap();
    sqlx::query(
        "INSERT INTO whos_online_record
             (id, max_users, max_users_date, max_visitors, max_visitors_date, generation)
         VALUES (1, 53, $1, 340, $1, 2)",
    )
    .bind(when)
    .execute(&pool)
    .await
    .unwrap();
    axum_whos_online::migrate(&pool).await.unwrap();
    let before = axum_whos_online::Record {
        max_users: 53,
        max_users_date: Some(when),
        max_visitors: 340,
        max_visitors_date: Some(when),
        generation: 2,
    };
    // Two sites at once: both start from it.
    let (forum, blog) = (
        PostgresRecord::new(pool.clone()).with_site("forum"),
        PostgresRecord::new(pool.clone()).with_site("blog"),
    );
    let (a, b) = tokio::join!(forum.load(), blog.load());
    assert_eq!((a.unwrap(), b.unwrap()), (before, before));
    // A raise below it changes nothing.
    let stored = forum
        .raise(&axum_whos_online::Record {
            generation: 2,
            ..axum_whos_online::Record::seen(3, 4, Utc::now())
        })
        .await
        .unwrap();
    assert_eq!(stored, before);
    // A site with its own record keeps it.
    sqlx::query("INSERT INTO whos_online_site_record (site, max_users) VALUES ('shop', 7)")
        .execute(&pool)
        .await
        .unwrap();
    let shop = PostgresRecord::new(pool.clone()).with_site("shop");
    assert_eq!(shop.load().await.unwrap().max_users, 7);

    // A site whose instances read the record from a warm Redis cache (filled
    // before the upgrade) still gets its row at its first tick, so the record
    // cannot fall when the cache expires.
    let prefix = common::prefix();
    let cache = axum_whos_online::RedisPresence::new(
        axum_whos_online::redis_pool(&common::redis_url()).unwrap(),
        &prefix,
    );
    axum_whos_online::RecordCache::cache_record(
        &cache,
        &before,
        std::time::Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let site = Site::with(Stack::Real, |b| b.prefix(&prefix).postgres(pool.clone())).await;
    site.whos.tick_now().await.unwrap();
    let row: (i64, i64) = sqlx::query_as(
        "SELECT max_users, max_visitors FROM whos_online_site_record WHERE site = $1",
    )
    .bind(&prefix)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row, (53, 340));
    site.whos.shutdown().await.unwrap();
    // The old table is left as it was, for an older version still running.
    let old: i64 = sqlx::query_scalar("SELECT max_users FROM whos_online_record WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(old, 53);
}

/// Redis's HyperLogLog keeps 100,000 distinct visitors and users of a day
/// within 2% (its standard error is 0.81%), in the same write as the sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_estimates_are_within_two_percent_at_100k() {
    let prefix = common::prefix();
    let store = axum_whos_online::RedisPresence::new(
        axum_whos_online::redis_pool(&common::redis_url()).unwrap(),
        &prefix,
    );
    const N: usize = 100_000;
    let at = START;
    for part in 0..10 {
        let batch = Batch {
            users: (0..N / 10).map(|i| format!("user-{part}-{i}")).collect(),
            visitors: (0..N / 10).map(|i| format!("{part:x}v{i:08x}")).collect(),
            ..Batch::default()
        };
        store.mark_seen(at, &batch).await.unwrap();
    }
    // The same people again change nothing.
    let again = Batch {
        users: (0..1000).map(|i| format!("user-0-{i}")).collect(),
        ..Batch::default()
    };
    store.mark_seen(at + 60, &again).await.unwrap();
    let tally = store
        .tally(at - 600, &[day("2025-11-24")], Default::default())
        .await
        .unwrap();
    let d = tally.distinct[0];
    for (kind, n) in [("users", d.users), ("visitors", d.visitors)] {
        let off = (n as f64 - N as f64).abs() / N as f64;
        assert!(off < 0.02, "{kind}: {n} is {:.2}% off", off * 100.0);
    }
    // The day's keys expire within the documented three days.
    let pool = axum_whos_online::redis_pool(&common::redis_url()).unwrap();
    let mut conn = pool.get().await.unwrap();
    let key = |kind: &str| format!("{{{prefix}}}:distinct:{kind}:2025-11-24");
    let max = axum_whos_online::DISTINCT_TTL_SECS as i64;
    for kind in ["users", "visitors"] {
        let t = ttl(&mut conn, &key(kind)).await;
        assert!(t > 0 && t <= max, "{kind}: {t}");
    }
    // A key made by a write within the minute after the last lifetime was set
    // has none yet (writes set it at most once a minute); the tick gives it.
    let hidden = Batch {
        hidden_users: vec!["someone".into()],
        ..Batch::default()
    };
    // The last write was at +60: one at +130 is due, and sets it.
    store.mark_seen(at + 130, &hidden).await.unwrap();
    let t = ttl(&mut conn, &key("hidden")).await;
    assert!(t > 0, "set by the write at +130: {t}");
    deadpool_redis::redis::cmd("PERSIST")
        .arg(key("hidden"))
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    store.mark_seen(at + 140, &hidden).await.unwrap();
    assert_eq!(ttl(&mut conn, &key("hidden")).await, -1, "not due at +140");
    store
        .tally(at - 600, &[day("2025-11-24")], Default::default())
        .await
        .unwrap();
    let t = ttl(&mut conn, &key("hidden")).await;
    assert!(t > 0 && t <= max, "the tick set it: {t}");
}

async fn ttl(conn: &mut deadpool_redis::Connection, key: &str) -> i64 {
    deadpool_redis::redis::cmd("TTL")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// A history store that fails while told to: the real Postgres store behind a
/// switch, to take Postgres away after a good read.
struct Switchable {
    inner: PostgresRecord,
    failing: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl HistoryStore for Switchable {
    async fn raise_days(
        &self,
        seen: &[Day],
        keep_from: Option<NaiveDate>,
        from: NaiveDate,
    ) -> axum_whos_online::Result<Vec<Day>> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(Error::Timeout {
                store: "postgres",
                timeout: std::time::Duration::from_secs(2),
            });
        }
        self.inner.raise_days(seen, keep_from, from).await
    }
}

/// Postgres down: before any good read `/stats/history` answers a JSON 503,
/// and the host's pages still work; after one, the last good copy is served
/// with its age while the failures are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_serves_the_last_good_copy_or_503() {
    let never = Site::with(Stack::Real, |b| b.postgres(common::dead_postgres())).await;
    never.visit("10.7.0.1").await;
    never.whos.flush().await.unwrap();
    let _ = never.whos.tick_now().await;
    assert!(matches!(never.whos.history(30), Err(Error::NoHistory)));
    let (status, body) = never.get_json("/stats/history").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"].as_str().unwrap().contains("history"),
        "{body}"
    );
    assert!(never.whos.counters().history_errors >= 1);
    never.whos.shutdown().await.unwrap();

    let pool = common::migrated_database().await;
    let failing = Arc::new(AtomicBool::new(false));
    let prefix = common::prefix();
    let store = Switchable {
        inner: PostgresRecord::new(pool.clone()).with_site(&prefix),
        failing: Arc::clone(&failing),
    };
    let site = Site::with(Stack::Real, |b| b.prefix(&prefix).history_store(store)).await;
    site.visit("10.7.0.2").await;
    let good = tick(&site, 1).await;
    assert_eq!((good[0].max_visitors, good[0].distinct_visitors), (1, 1));
    let as_of = site.whos.history(1).unwrap().as_of.unwrap();

    // Postgres goes: a crowd comes and goes while the history cannot be written.
    failing.store(true, Ordering::Relaxed);
    site.clock.advance_secs(120);
    for i in 3..=6 {
        site.visit(&format!("10.7.0.{i}")).await;
    }
    site.whos.flush().await.unwrap();
    site.whos.tick_now().await.unwrap();
    assert_eq!(site.whos.counters().history_errors, 1);
    let served = site.whos.history(1).unwrap();
    assert_eq!(served.as_of, Some(as_of), "the age of the last good copy");
    assert_eq!(
        served.days[0].distinct_visitors, 1,
        "the last good copy, not a new read"
    );
    let (status, _) = site.get_json("/stats/history").await;
    assert_eq!(status, StatusCode::OK);

    // Back after the crowd left: the peak seen during the outage is written.
    site.clock.advance_secs(20 * 60);
    failing.store(false, Ordering::Relaxed);
    site.whos.tick_now().await.unwrap();
    assert_eq!(site.whos.view().visitor_count(), 0);
    let back = site.whos.history(1).unwrap();
    assert!(back.as_of > Some(as_of));
    assert_eq!(
        (back.days[0].max_visitors, back.days[0].distinct_visitors),
        (5, 5),
        "{back:?}"
    );
    site.whos.shutdown().await.unwrap();
}
