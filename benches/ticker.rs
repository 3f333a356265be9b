//! The ticker's Redis work on large sets: prune + count (`RedisPresence::
//! prune_and_count`, one pipelined round trip) at 10k, 100k and 1M visitors, and
//! the Redis memory each member takes.
//!
//! ```text
//! cargo bench --bench ticker                 # REDIS_URL, default redis://127.0.0.1:6379
//! cargo bench --bench ticker -- 10000 100000  # other sizes
//! ```
//!
//! Each set is filled with `ZADD`s of 10,000 members under a prefix of its own, with
//! last-seen times spread evenly over the last 16 minutes, so that a tick with the
//! default 15-minute window prunes the minute that just fell out (1/16 of the
//! set), as in steady traffic. A "prune" tick is timed after each refill of that
//! minute, then a "count-only" tick with nothing left to prune. Members are
//! 24-hex-digit strings, the shape of the crate's default visitor pseudonyms;
//! memory is also given for IPv4 text. The keys are deleted afterwards.

use std::time::{Duration, Instant};

use axum_whos_online::{PresenceStore, RedisPresence};
use deadpool_redis::redis;

const WINDOW: i64 = 900;
const SPREAD: i64 = 960;
const ROUNDS: usize = 5;
const CHUNK: usize = 10_000;

fn pseudonym(i: u64) -> String {
    // A fixed mixing of i: distinct for distinct i, looks random, 24 hex digits.
    let a = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let b = (i ^ 0x5851_F42D_4C95_7F2D).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    format!("{:016x}{:08x}", a, b >> 32)
}

fn ipv4(i: u64) -> String {
    std::net::Ipv4Addr::from(0xC612_0000_u32.wrapping_add(i as u32)).to_string()
}

async fn fill(
    conn: &mut deadpool_redis::Connection,
    key: &str,
    now: i64,
    members: impl Iterator<Item = u64>,
    name: fn(u64) -> String,
) -> redis::RedisResult<()> {
    let members: Vec<u64> = members.collect();
    for chunk in members.chunks(CHUNK) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(key);
        for &i in chunk {
            cmd.arg(now - (i as i64 % SPREAD)).arg(name(i));
        }
        cmd.query_async::<()>(conn).await?;
    }
    Ok(())
}

async fn used_memory(conn: &mut deadpool_redis::Connection) -> redis::RedisResult<i64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

async fn memory_per_member(
    conn: &mut deadpool_redis::Connection,
    key: &str,
    n: u64,
    name: fn(u64) -> String,
) -> redis::RedisResult<(f64, f64)> {
    let before = used_memory(conn).await?;
    fill(conn, key, 1_800_000_000, 0..n, name).await?;
    let after = used_memory(conn).await?;
    let usage: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(conn)
        .await?;
    redis::cmd("UNLINK")
        .arg(key)
        .query_async::<()>(conn)
        .await?;
    Ok((usage as f64 / n as f64, (after - before) as f64 / n as f64))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<u64> = {
        let given: Vec<u64> = std::env::args()
            .skip(1)
            .filter_map(|a| a.replace('_', "").parse().ok())
            .collect();
        if given.is_empty() {
            vec![10_000, 100_000, 1_000_000]
        } else {
            given
        }
    };
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let pool = axum_whos_online::redis_pool(&url)?;
    let mut conn = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ticker bench: skipped, no Redis at {url} ({e})");
            return Ok(());
        }
    };
    let now = chrono::Utc::now().timestamp();
    let cutoff = now - WINDOW;
    println!(
        "{:>10} {:>12} {:>12} {:>14} {:>14} {:>16} {:>14}",
        "members",
        "fill s",
        "pruned",
        "prune tick ms",
        "count tick ms",
        "bytes/member",
        "(IPv4 text)"
    );
    for n in sizes {
        let prefix = format!("whos_bench_ticker_{}_{n}", std::process::id());
        let store = RedisPresence::new(pool.clone(), &prefix);
        let key = store.visitors_key().to_owned();

        let (per_member, per_member_info) =
            memory_per_member(&mut conn, &key, n, pseudonym).await?;
        let (per_ipv4, _) = memory_per_member(&mut conn, &key, n, ipv4).await?;

        let started = Instant::now();
        fill(&mut conn, &key, now, 0..n, pseudonym).await?;
        let fill_time = started.elapsed();
        let expiring = |i: &u64| now - (*i as i64 % SPREAD) < cutoff;

        let (mut prune_ticks, mut count_ticks) = (Vec::new(), Vec::new());
        let mut pruned = 0;
        for round in 0..ROUNDS {
            if round > 0 {
                fill(&mut conn, &key, now, (0..n).filter(expiring), pseudonym).await?;
            }
            let before: u64 = redis::cmd("ZCARD").arg(&key).query_async(&mut conn).await?;
            let t = Instant::now();
            let counts = store.prune_and_count(cutoff).await?;
            prune_ticks.push(t.elapsed());
            pruned = before - counts.visitors;
            let t = Instant::now();
            store.prune_and_count(cutoff).await?;
            count_ticks.push(t.elapsed());
        }
        redis::cmd("UNLINK")
            .arg(&key)
            .query_async::<()>(&mut conn)
            .await?;
        println!(
            "{n:>10} {:>12.2} {pruned:>12} {:>14.2} {:>14.2} {:>16} {:>14.0}",
            fill_time.as_secs_f64(),
            ms(median(prune_ticks)),
            ms(median(count_ticks)),
            format!("{per_member:.0} ({per_member_info:.0})"),
            per_ipv4,
        );
    }
    println!(
        "\nbytes/member: MEMORY USAGE of the set / members (INFO used_memory delta in ());\n\
         ticks: median of {ROUNDS}, wall time of one pipelined round trip from this client."
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return Ok(());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
