//! The Redis cost of places at scale: a tick (`prune_and_count`) and a view
//! refresh (`snapshot`) with N members spread over P places, against the same
//! store and members without places.
//!
//! ```text
//! cargo bench --bench places                     # 1,000,000 members, 10,000 places
//! cargo bench --bench places -- 100000 1000       # other sizes: members places
//! ```
//!
//! As in `benches/ticker.rs`, members are visitors with 24-hex-digit pseudonyms,
//! last seen evenly over the last 16 minutes, so a tick with the 15-minute window
//! prunes 1/16 of them; member i is at place i mod P, written the way the
//! store's scripts write it (the where hash, the place counts, the place
//! registry). The keys are deleted afterwards. REDIS_URL, default
//! redis://127.0.0.1:6379.

mod support;

use support::{median, ms, pseudonym};

use std::time::Instant;

use axum_whos_online::{PresenceStore, RedisPresence};
use deadpool_redis::redis;

const WINDOW: i64 = 900;
const SPREAD: i64 = 960;
const ROUNDS: usize = 5;
const CHUNK: usize = 10_000;

fn place(i: u64, places: u64) -> String {
    format!("/forum/{}", i % places)
}

/// Writes members `ids` as the store would: the visitors set, and (with
/// places) the where hash, the place counts and the registry.
async fn fill(
    conn: &mut deadpool_redis::Connection,
    prefix: &str,
    now: i64,
    ids: &[u64],
    places: Option<u64>,
) -> redis::RedisResult<()> {
    let seen = |i: u64| now - (i as i64 % SPREAD);
    for chunk in ids.chunks(CHUNK) {
        let mut pipe = redis::pipe();
        let zadd = pipe.cmd("ZADD").arg(format!("{{{prefix}}}:visitors"));
        for &i in chunk {
            zadd.arg(seen(i)).arg(pseudonym(i));
        }
        if let Some(p) = places {
            let hset = pipe.cmd("HSET").arg(format!("{{{prefix}}}:where"));
            for &i in chunk {
                hset.arg(format!("v:{}", pseudonym(i)))
                    .arg(format!("v|{}", place(i, p)));
            }
            for &i in chunk {
                pipe.cmd("HINCRBY")
                    .arg(format!("{{{prefix}}}:place-counts"))
                    .arg(format!("v|{}", place(i, p)))
                    .arg(1)
                    .ignore();
                pipe.cmd("ZADD")
                    .arg(format!("{{{prefix}}}:places"))
                    .arg("GT")
                    .arg(seen(i))
                    .arg(place(i, p))
                    .ignore();
            }
        }
        pipe.query_async::<()>(conn).await?;
    }
    Ok(())
}

async fn drop_keys(conn: &mut deadpool_redis::Connection, prefix: &str) -> redis::RedisResult<()> {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{{{prefix}}}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let p = args.get(1).copied().unwrap_or(10_000);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let pool = axum_whos_online::redis_pool(&url)?;
    let mut conn = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("places bench: skipped, no Redis at {url} ({e})");
            return Ok(());
        }
    };
    let now = chrono::Utc::now().timestamp();
    let cutoff = now - WINDOW;
    let all: Vec<u64> = (0..n).collect();
    let expiring: Vec<u64> = all
        .iter()
        .copied()
        .filter(|i| now - (*i as i64 % SPREAD) < cutoff)
        .collect();
    println!(
        "{n} members over {p} places, {} expire per tick",
        expiring.len()
    );
    println!(
        "{:>8} {:>10} {:>15} {:>15} {:>13}",
        "places", "fill s", "prune tick ms", "count tick ms", "refresh ms"
    );
    for with_places in [false, true] {
        let prefix = format!("whos_bench_places_{}_{with_places}", std::process::id());
        let mut store = RedisPresence::new(pool.clone(), &prefix).without_member_cap();
        if with_places {
            store = store.with_max_places(p as usize + 1);
        }
        let places = with_places.then_some(p);
        let started = Instant::now();
        fill(&mut conn, &prefix, now, &all, places).await?;
        let fill_time = started.elapsed();
        let (mut prune, mut count, mut refresh) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            if round > 0 {
                fill(&mut conn, &prefix, now, &expiring, places).await?;
            }
            let t = Instant::now();
            let counts = store.prune_and_count(cutoff).await?;
            prune.push(t.elapsed());
            assert_eq!(counts.visitors, n - expiring.len() as u64);
            let t = Instant::now();
            store.prune_and_count(cutoff).await?;
            count.push(t.elapsed());
            let t = Instant::now();
            let seen = store.snapshot(cutoff, 1_000).await?;
            refresh.push(t.elapsed());
            if with_places {
                let placed: u64 = seen.places.iter().map(|pc| pc.counts.visitors).sum();
                assert_eq!(placed, counts.visitors, "every member at its place");
                assert_eq!(seen.places.len() as u64, p);
            }
        }
        drop_keys(&mut conn, &prefix).await?;
        println!(
            "{:>8} {:>10.2} {:>15.2} {:>15.2} {:>13.2}",
            if with_places { "on" } else { "off" },
            fill_time.as_secs_f64(),
            ms(median(prune)),
            ms(median(count)),
            ms(median(refresh)),
        );
    }
    println!(
        "\nmedian of {ROUNDS}: wall time of the tick's pipeline (after a refill of the \
         expired 1/16, and again with nothing to prune) and of a view refresh's reads, \
         from this client."
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return Ok(());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
