//! The ticker: pruning, counting, raising the record, and the record cache.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum_whos_online::{
    Error, MemoryPresence, PostgresRecord, Record, RecordCache, RecordReset, RecordStore,
    RedisPresence, WhosOnline,
};
use common::proxy::Proxy;
use common::{ClockExt, Site, Stack};

async fn tick_prunes_counts_and_raises(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.visit_as("bob", "10.0.0.2").await;
    site.visit("10.0.0.3").await;
    site.whos.flush().await.unwrap();

    let t0 = site.clock.now_for_test();
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!((tick.counts.users, tick.counts.visitors), (2, 1));
    assert!(tick.raised);
    assert_eq!(tick.record.max_users, 2);
    assert_eq!(tick.record.max_users_date, Some(t0));
    assert_eq!(tick.record.max_visitors, 1);

    // Fifteen minutes later (the window) they are still in; one second more, gone.
    site.clock.advance_secs(900);
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!((tick.counts.users, tick.counts.visitors), (2, 1));
    site.clock.advance_secs(1);
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!((tick.counts.users, tick.counts.visitors), (0, 0));
    assert!(!tick.raised);
    // The record stays where it was.
    assert_eq!(tick.record.max_users, 2);
    assert_eq!(site.whos.record().await.unwrap().max_users_date, Some(t0));
}

async fn record_dates_change_only_on_a_rise(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.whos.flush().await.unwrap();
    let first = site.clock.now_for_test();
    site.whos.tick_now().await.unwrap();

    // Same count a minute later: no raise, the date stays.
    site.clock.advance_secs(60);
    site.visit_as("alice", "10.0.0.1").await;
    site.whos.flush().await.unwrap();
    let tick = site.whos.tick_now().await.unwrap();
    assert!(!tick.raised);
    assert_eq!(
        site.whos.record().await.unwrap().max_users_date,
        Some(first)
    );

    // One more user: raised, with the new date.
    site.clock.advance_secs(60);
    site.visit_as("bob", "10.0.0.2").await;
    site.whos.flush().await.unwrap();
    let second = site.clock.now_for_test();
    let tick = site.whos.tick_now().await.unwrap();
    assert!(tick.raised);
    let r = site.whos.record().await.unwrap();
    assert_eq!((r.max_users, r.max_users_date), (2, Some(second)));
}

/// The seed's trap: its cache returned strings, so `count > cached` never held
/// while the cache was warm. Here the cache is warm throughout and the record rises.
async fn record_rises_while_the_cache_is_warm(stack: Stack) {
    let site = Site::new(stack).await;
    for (i, name) in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
        .iter()
        .enumerate()
    {
        site.visit_as(name, "10.0.0.1").await;
        site.whos.flush().await.unwrap();
        let tick = site.whos.tick_now().await.unwrap();
        assert!(tick.raised, "tick {i} should raise");
        // /stats reads the cache first; it must show the new record at once.
        let (status, stats) = site.get_json("/stats").await;
        assert_eq!(status, 200);
        assert_eq!(stats["max_users"], i as u64 + 1);
    }
    if let Some(pg) = &site.pg {
        let truth = PostgresRecord::new(pg.clone())
            .with_site(&site.prefix)
            .load()
            .await
            .unwrap();
        assert_eq!(truth.max_users, 10);
    }
}

async fn ticks_are_harmless_when_nobody_is_there(stack: Stack) {
    let site = Site::new(stack).await;
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!((tick.counts.users, tick.counts.visitors), (0, 0));
    assert!(!tick.raised);
    assert_eq!(site.whos.record().await.unwrap(), Record::default());
}

/// A counter by name (see `CounterSnapshot::fields`).
fn counter(whos: &WhosOnline, name: &str) -> u64 {
    whos.counters()
        .fields()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, v)| v)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// `n` anonymous visitors from distinct addresses `10.{net}.0.{i}`.
async fn visitors(site: &Site, net: u8, n: u8) {
    for i in 0..n {
        site.visit(&format!("10.{net}.0.{i}")).await;
    }
}

/// The record as Postgres holds it, on the real stack.
async fn truth(site: &Site) -> Option<Record> {
    match &site.pg {
        Some(pg) => Some(
            PostgresRecord::new(pg.clone())
                .with_site(&site.prefix)
                .load()
                .await
                .unwrap(),
        ),
        None => None,
    }
}

/// A reset lowers the record; a count left as it is keeps its date, a lowered one
/// is dated at the reset. The view then raises it at once to what is online
/// (the record is never below the counts beside it), through the same
/// raise-only write as a tick.
async fn reset_record_lowers_and_the_view_raises_to_what_is_online(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.visit_as("bob", "10.0.0.1").await;
    visitors(&site, 1, 49).await;
    site.whos.flush().await.unwrap();
    let t0 = site.clock.now_for_test();
    let high = site.whos.tick_now().await.unwrap().record;
    assert_eq!(
        (high.max_users, high.max_visitors, high.generation),
        (2, 49, 0)
    );

    site.clock.advance_secs(10);
    let t_reset = site.clock.now_for_test();
    let reset = site
        .whos
        .reset_record(RecordReset::To {
            users: 2,
            visitors: 5,
        })
        .await
        .unwrap();
    assert_eq!((reset.max_users, reset.max_users_date), (2, Some(t0)));
    assert_eq!(
        (reset.max_visitors, reset.max_visitors_date),
        (5, Some(t_reset))
    );
    assert_eq!(reset.generation, 1);
    assert_eq!(counter(&site.whos, "record_resets"), 1);

    // 49 visitors are still online: the view raised the record back to them.
    let r = site.whos.record().await.unwrap();
    assert_eq!((r.max_users, r.max_users_date), (2, Some(t0)));
    assert_eq!((r.max_visitors, r.max_visitors_date), (49, Some(t_reset)));
    assert_eq!(r.generation, 1);
    assert_eq!(truth(&site).await.unwrap_or(r), r);
    let (_, stats) = site.get_json("/stats").await;
    assert_eq!(
        stats,
        serde_json::json!({
            "max_users": 2, "max_users_date": t0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "max_visitors": 49, "max_visitors_date": t_reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "as_of": t_reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    );
    let tick = site.whos.tick_now().await.unwrap();
    assert!(!tick.raised);
    assert_eq!(tick.record, r);

    // Everyone leaves: down to nothing, no dates, and it stays there.
    site.clock.advance_secs(901);
    site.whos.tick_now().await.unwrap();
    let zero = site
        .whos
        .reset_record(RecordReset::To {
            users: 0,
            visitors: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        zero,
        Record {
            generation: 2,
            ..Record::default()
        }
    );
    assert_eq!(site.whos.record().await.unwrap(), zero);
    let (_, stats) = site.get_json("/stats").await;
    assert_eq!(stats["max_users_date"], serde_json::Value::Null);

    // Two users and three visitors come (and the /stats reader, a fourth): the
    // next refresh raises the record.
    site.visit_as("alice", "10.0.0.1").await;
    site.visit_as("bob", "10.0.0.1").await;
    visitors(&site, 3, 3).await;
    site.settle().await;
    let t1 = site.clock.now_for_test();
    let r = site.whos.record().await.unwrap();
    assert_eq!(
        r,
        Record {
            generation: 2,
            ..Record::seen(2, 4, t1)
        }
    );
    assert_eq!(truth(&site).await.unwrap_or(r), r);
}

/// Counts above the stored record are refused with a clear error; nothing moves.
async fn reset_record_above_the_record_is_an_error(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.visit("10.0.0.2").await;
    site.whos.flush().await.unwrap();
    let before = site.whos.tick_now().await.unwrap().record;
    for (users, visitors) in [(2, 0), (0, 2), (2, 2)] {
        let err = site
            .whos
            .reset_record(RecordReset::To { users, visitors })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::ResetAboveRecord {
                    max_users: 1,
                    max_visitors: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("only lowers"), "{err}");
    }
    assert_eq!(site.whos.record().await.unwrap(), before);
    assert_eq!(truth(&site).await.unwrap_or(before), before);
    assert_eq!(counter(&site.whos, "record_resets"), 0);
}

/// `ToCurrentCounts` lowers each count to what is online now; a count with more
/// online than the record stays as it is (and the view raises it at once).
async fn reset_record_to_the_current_counts(stack: Stack) {
    let site = Site::new(stack).await;
    for i in 0..10 {
        site.visit_as(&format!("u{i}"), "10.0.0.1").await;
    }
    visitors(&site, 1, 3).await;
    site.whos.flush().await.unwrap();
    let t0 = site.clock.now_for_test();
    site.whos.tick_now().await.unwrap();

    // Everyone leaves; 4 users and 5 visitors come.
    site.clock.advance_secs(901);
    for i in 0..4 {
        site.visit_as(&format!("u{i}"), "10.0.0.1").await;
    }
    visitors(&site, 2, 5).await;
    site.whos.flush().await.unwrap();
    let t1 = site.clock.now_for_test();
    let reset = site
        .whos
        .reset_record(RecordReset::ToCurrentCounts)
        .await
        .unwrap();
    assert_eq!((reset.max_users, reset.max_users_date), (4, Some(t1)));
    assert_eq!((reset.max_visitors, reset.max_visitors_date), (3, Some(t0)));
    assert_eq!(reset.generation, 1);
    // 5 visitors are online, above the 3 the reset kept: the view raised them.
    let r = site.whos.record().await.unwrap();
    assert_eq!((r.max_users, r.max_users_date), (4, Some(t1)));
    assert_eq!((r.max_visitors, r.max_visitors_date), (5, Some(t1)));
    assert_eq!(r.generation, 1);
    assert_eq!(truth(&site).await.unwrap_or(r), r);

    site.clock.advance_secs(5);
    let tick = site.whos.tick_now().await.unwrap();
    assert!(!tick.raised);
    assert_eq!(tick.record, r);
}

/// A record cache whose writes fail while `failing` is above 0, one per write:
/// a cache that misses the write after a raise or a reset.
struct FlakyCache {
    inner: Arc<dyn RecordCache>,
    failing: Arc<AtomicUsize>,
}

#[async_trait]
impl RecordCache for FlakyCache {
    async fn cached_record(&self) -> axum_whos_online::Result<Option<Record>> {
        self.inner.cached_record().await
    }
    async fn cache_record(&self, record: &Record, ttl: Duration) -> axum_whos_online::Result<()> {
        let fail = self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(Error::Timeout {
                store: "redis",
                timeout: Duration::from_secs(2),
            });
        }
        self.inner.cache_record(record, ttl).await
    }
}

/// A site whose record cache writes fail on demand: the site, the cache
/// underneath (to read it as it is), and the number of writes to fail. With
/// Redis, the cache is the site's own record hash.
async fn flaky_site(stack: Stack) -> (Site, Arc<dyn RecordCache>, Arc<AtomicUsize>) {
    let prefix = common::prefix();
    let inner: Arc<dyn RecordCache> = match stack {
        Stack::Real => Arc::new(RedisPresence::new(
            axum_whos_online::redis_pool(&common::redis_url()).unwrap(),
            &prefix,
        )),
        Stack::Memory => Arc::new(MemoryPresence::new()),
    };
    let failing = Arc::new(AtomicUsize::new(0));
    let store = FlakyCache {
        inner: Arc::clone(&inner),
        failing: Arc::clone(&failing),
    };
    let mut site = Site::with(stack, |b| b.prefix(&prefix).record_cache(store)).await;
    site.prefix = prefix;
    (site, inner, failing)
}

/// Finding: a raise reached Postgres, its cache write failed, and `/stats`
/// served the old record from the cache for its whole time to live. Now reads on
/// this instance never show less than it wrote, and the next ticks write the
/// cache again until it takes the record.
async fn a_failed_cache_write_after_a_raise_heals(stack: Stack) {
    let (site, cache, failing) = flaky_site(stack).await;
    for u in ["a", "b", "c"] {
        site.visit_as(u, "10.0.0.1").await;
    }
    site.whos.flush().await.unwrap();
    site.whos.tick_now().await.unwrap();
    assert_eq!(cache.cached_record().await.unwrap().unwrap().max_users, 3);

    // The raise to 5 reaches the record store; its cache write fails.
    for u in ["d", "e"] {
        site.visit_as(u, "10.0.0.1").await;
    }
    site.whos.flush().await.unwrap();
    site.clock.advance_secs(30);
    let t5 = site.clock.now_for_test();
    failing.store(1, Ordering::SeqCst);
    let tick = site.whos.tick_now().await.unwrap();
    assert!(tick.raised);
    assert_eq!(
        failing.load(Ordering::SeqCst),
        0,
        "the cache write was tried"
    );
    assert_eq!(cache.cached_record().await.unwrap().unwrap().max_users, 3);
    if let Some(truth) = truth(&site).await {
        assert_eq!(truth.max_users, 5);
    }
    // Meanwhile this instance serves what it wrote, not the cache.
    let r = site.whos.record().await.unwrap();
    assert_eq!((r.max_users, r.max_users_date), (5, Some(t5)));
    let (_, stats) = site.get_json("/stats").await;
    assert_eq!(stats["max_users"], 5);

    // The retry at the next tick fails too; reads still hold.
    failing.store(1, Ordering::SeqCst);
    site.clock.advance_secs(30);
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!(
        failing.load(Ordering::SeqCst),
        0,
        "the cache write was retried"
    );
    assert!(!tick.raised);
    assert_eq!(tick.record.max_users, 5);
    assert_eq!(cache.cached_record().await.unwrap().unwrap().max_users, 3);
    assert_eq!(site.whos.record().await.unwrap().max_users, 5);

    // And the one after heals the cache: it holds what Postgres holds.
    site.clock.advance_secs(30);
    site.whos.tick_now().await.unwrap();
    let healed = cache.cached_record().await.unwrap().unwrap();
    assert_eq!((healed.max_users, healed.max_users_date), (5, Some(t5)));
    assert_eq!(truth(&site).await.unwrap_or(healed), healed);
    let (_, stats) = site.get_json("/stats").await;
    assert_eq!(stats["max_users"], 5);
    assert_eq!(counter(&site.whos, "cache_refill_retries"), 2);
    assert!(site.whos.counters().cache_errors >= 2);
}

/// A reset whose cache write fails: this instance serves the reset record at
/// once, and the next tick replaces the cache's old record with it.
async fn a_failed_cache_write_after_a_reset_heals(stack: Stack) {
    let (site, cache, failing) = flaky_site(stack).await;
    visitors(&site, 1, 9).await;
    site.whos.flush().await.unwrap();
    site.whos.tick_now().await.unwrap();

    site.clock.advance_secs(901);
    failing.store(1, Ordering::SeqCst);
    let reset = site
        .whos
        .reset_record(RecordReset::To {
            users: 0,
            visitors: 2,
        })
        .await
        .unwrap();
    assert_eq!(failing.load(Ordering::SeqCst), 0);
    let stale = cache.cached_record().await.unwrap().unwrap();
    assert_eq!((stale.max_visitors, stale.generation), (9, 0));
    assert_eq!(site.whos.record().await.unwrap(), reset);
    let (_, stats) = site.get_json("/stats").await;
    assert_eq!(stats["max_visitors"], 2);

    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!(tick.record, reset);
    assert_eq!(cache.cached_record().await.unwrap(), Some(reset));
}

on_both_stacks!(
    tick_prunes_counts_and_raises,
    record_dates_change_only_on_a_rise,
    record_rises_while_the_cache_is_warm,
    ticks_are_harmless_when_nobody_is_there,
    reset_record_lowers_and_the_view_raises_to_what_is_online,
    reset_record_above_the_record_is_an_error,
    reset_record_to_the_current_counts,
    a_failed_cache_write_after_a_raise_heals,
    a_failed_cache_write_after_a_reset_heals,
);

/// Finding: a record repaired by hand (Postgres lowered, the cache hash
/// deleted) stayed low with more online, because the instance kept the highest
/// record it had seen as a floor. Now the tick compares with the record it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_lowered_record_is_raised_to_the_real_peak() {
    let site = Site::new(Stack::Real).await;
    visitors(&site, 1, 49).await;
    site.whos.flush().await.unwrap();
    assert_eq!(site.whos.tick_now().await.unwrap().record.max_visitors, 49);

    let pg = site.pg.clone().unwrap();
    sqlx::query("UPDATE whos_online_site_record SET max_visitors = 5 WHERE site = $1")
        .bind(&site.prefix)
        .execute(&pg)
        .await
        .unwrap();
    let pool = axum_whos_online::redis_pool(&common::redis_url()).unwrap();
    let mut conn = pool.get().await.unwrap();
    let _: i64 = deadpool_redis::redis::cmd("DEL")
        .arg(format!("{{{}}}:record", site.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();

    // The 49 are still online.
    site.clock.advance_secs(60);
    let tick = site.whos.tick_now().await.unwrap();
    assert!(tick.raised);
    assert_eq!(tick.record.max_visitors, 49);
    assert_eq!(
        PostgresRecord::new(pg)
            .with_site(&site.prefix)
            .load()
            .await
            .unwrap()
            .max_visitors,
        49
    );
    let (_, stats) = site.get_json("/stats").await;
    assert_eq!(stats["max_visitors"], 49);
}

/// Another instance of `a`'s site: the same Redis prefix and Postgres database,
/// its clock set to `a`'s.
async fn second_instance(a: &Site) -> Site {
    let pg = a.pg.clone().unwrap();
    let b = Site::with(Stack::Real, |builder| {
        builder
            .prefix(&a.prefix)
            .postgres(pg)
            .redis(axum_whos_online::redis_pool(&common::redis_url()).unwrap())
    })
    .await;
    b.clock.set_unix(a.clock.now_for_test().timestamp());
    b
}

/// Two instances on one Redis prefix and one Postgres database. Both saw 49; a
/// reset on one lowers the record to 5; with 30 online, a tick on the other
/// raises it to 30: it dropped the 49 it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_on_one_instance_drops_the_floor_of_another() {
    let a = Site::new(Stack::Real).await;
    let b = second_instance(&a).await;
    visitors(&a, 1, 49).await;
    a.whos.flush().await.unwrap();
    assert_eq!(a.whos.tick_now().await.unwrap().record.max_visitors, 49);
    assert_eq!(b.whos.tick_now().await.unwrap().record.max_visitors, 49);

    // Everyone leaves (else the view would raise the reset record back to
    // them at once), and the record is reset on A.
    for site in [&a, &b] {
        site.clock.advance_secs(901);
    }
    a.whos
        .reset_record(RecordReset::To {
            users: 0,
            visitors: 5,
        })
        .await
        .unwrap();
    assert_eq!(b.whos.refresh_now().await.unwrap().record().max_visitors, 5);

    visitors(&b, 2, 30).await;
    b.whos.flush().await.unwrap();
    let tick = b.whos.tick_now().await.unwrap();
    assert!(tick.raised);
    assert_eq!(
        (tick.record.max_visitors, tick.record.max_visitors_date),
        (30, Some(b.clock.now_for_test()))
    );
    assert_eq!(
        PostgresRecord::new(a.pg.clone().unwrap())
            .with_site(&a.prefix)
            .load()
            .await
            .unwrap()
            .max_visitors,
        30
    );
    for site in [&a, &b] {
        site.whos.refresh_now().await.unwrap();
        let (_, stats) = site.get_json("/stats").await;
        assert_eq!(stats["max_visitors"], 30);
    }
}

/// A raise kept while Postgres was down, from before a reset another instance
/// made meanwhile, is dropped: it would put the old count back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raise_kept_from_before_a_reset_is_not_written() {
    let a = Site::new(Stack::Real).await;
    let pg = a.pg.clone().unwrap();
    let opts = (*pg.connect_options()).clone();
    let proxy = Proxy::to_port(opts.get_port()).await;
    let through_proxy = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(opts.host("127.0.0.1").port(proxy.port()));
    let b = Site::with(Stack::Real, |builder| {
        builder
            .prefix(&a.prefix)
            .postgres(through_proxy)
            .redis(axum_whos_online::redis_pool(&common::redis_url()).unwrap())
    })
    .await;
    b.clock.set_unix(a.clock.now_for_test().timestamp());
    visitors(&a, 1, 10).await;
    a.whos.flush().await.unwrap();
    assert_eq!(a.whos.tick_now().await.unwrap().record.max_visitors, 10);

    // B sees 59 while its Postgres is cut: the raise is kept.
    visitors(&b, 2, 49).await;
    b.whos.flush().await.unwrap();
    proxy.cut();
    let tick = b.whos.tick_now().await.unwrap();
    assert_eq!(tick.counts.visitors, 59);
    assert!(tick.raise_pending);

    // Meanwhile everyone leaves and the record is reset; then B's Postgres
    // comes back, the 59 gone.
    for site in [&a, &b] {
        site.clock.advance_secs(901);
    }
    let reset = a
        .whos
        .reset_record(RecordReset::To {
            users: 0,
            visitors: 5,
        })
        .await
        .unwrap();
    proxy.restore();
    let tick = b.whos.tick_now().await.unwrap();
    assert!(!tick.raise_pending && !tick.raised, "{tick:?}");
    assert_eq!(tick.record, reset);
    assert_eq!(
        PostgresRecord::new(pg)
            .with_site(&a.prefix)
            .load()
            .await
            .unwrap(),
        reset
    );
    assert_eq!(counter(&b.whos, "stale_raises_dropped"), 1);
}

/// Polls `check` every 20 ms until it holds; panics after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A failed cache write is retried by an instance that does not hold the tick
/// lease: its background ticks do not prune or count, but they heal the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cache_write_is_retried_off_the_lease() {
    let prefix = common::prefix();
    let pg = common::migrated_database().await;
    let redis_port: u16 = common::redis_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap();
    let proxy = Proxy::to_port(redis_port).await;
    let instance = |url: &str, every: Duration| {
        WhosOnline::builder()
            .redis(axum_whos_online::redis_pool(url).unwrap())
            .postgres(pg.clone())
            .identify_users(common::header_user())
            .prefix(&prefix)
            .server_time(false)
            .tick_interval(every)
            .build()
            .unwrap()
    };
    // A ticks (a lease of two seconds, renewed every second); B, behind the
    // proxy, tries every 50 ms and finds the lease taken.
    let a = instance(&common::redis_url(), Duration::from_secs(1));
    eventually("A takes the lease", Duration::from_secs(10), || async {
        a.holds_tick_lease()
    })
    .await;
    let b = instance(&proxy.url("redis"), Duration::from_millis(50));
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .layer(a.layer());
    for u in ["x", "y", "z"] {
        common::page(&app, Some(u), "10.0.0.1").await;
    }
    a.flush().await.unwrap();
    assert_eq!(a.tick_now().await.unwrap().record.max_users, 3);

    // B resets the record while its Redis is cut: Postgres takes it, the cache
    // not. (To the 3 users online: a lower count would be raised back to them
    // at A's next refresh.)
    proxy.cut();
    let reset = b
        .reset_record(RecordReset::To {
            users: 3,
            visitors: 0,
        })
        .await
        .unwrap();
    assert_eq!(reset.generation, 1);
    assert!(b.counters().cache_errors >= 1);
    let cache = RedisPresence::new(
        axum_whos_online::redis_pool(&common::redis_url()).unwrap(),
        &prefix,
    );
    assert_eq!(cache.cached_record().await.unwrap().unwrap().generation, 0);

    proxy.restore();
    eventually("B heals the cache", Duration::from_secs(10), || async {
        cache.cached_record().await.ok().flatten() == Some(reset)
    })
    .await;
    assert!(counter(&b, "cache_refill_retries") >= 1);
    assert!(a.holds_tick_lease() && !b.holds_tick_lease());
    eventually(
        "A's view shows the reset",
        Duration::from_secs(10),
        || async { a.record().await.unwrap() == reset },
    )
    .await;
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

/// Two sites sharing Redis and Postgres tick concurrently many times: the record
/// ends at the true peak and never reads lower than an earlier read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ticks_from_two_instances_never_lower_the_record() {
    let a = Site::new(Stack::Real).await;
    let b = second_instance(&a).await;
    for i in 0..7 {
        a.visit_as(&format!("user{i}"), "10.0.0.1").await;
    }
    a.whos.flush().await.unwrap();
    let mut last = 0;
    for _ in 0..10 {
        let (ra, rb) = tokio::join!(a.whos.tick_now(), b.whos.tick_now());
        ra.unwrap();
        rb.unwrap();
        let r = a.whos.record().await.unwrap().max_users;
        assert!(r >= last);
        last = r;
    }
    assert_eq!(last, 7);
    assert_eq!(
        PostgresRecord::new(a.pg.clone().unwrap())
            .with_site(&a.prefix)
            .load()
            .await
            .unwrap()
            .max_users,
        7
    );
}

/// Postgres down during ticks: ticks go on, nothing is lowered, and the raise is
/// kept pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_store_down_keeps_ticking_and_keeps_the_raise() {
    let site = Site::with(Stack::Real, |b| b.postgres(common::dead_postgres())).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.whos.flush().await.unwrap();
    let tick = site.whos.tick_now().await.unwrap();
    assert_eq!(tick.counts.users, 1);
    assert!(!tick.raised);
    assert!(tick.raise_pending);
    let tick = site.whos.tick_now().await.unwrap();
    assert!(tick.raise_pending);
    assert!(site.whos.counters().record_errors >= 2);
}

/// Redis down during ticks: the tick reports an error, counts it, and nothing panics.
#[tokio::test]
async fn presence_store_down_fails_the_tick_cleanly() {
    let site = Site::with(Stack::Real, |b| b.redis(common::dead_redis())).await;
    assert!(site.whos.tick_now().await.is_err());
    assert_eq!(site.whos.counters().tick_errors, 1);
}
