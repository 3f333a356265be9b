//! The ticker's Redis work on large sets: prune + count (`RedisPresence::
//! prune_and_count`, one pipelined round trip) at 10k, 100k and 1M visitors, and
//! the Redis memory each member takes; with the daily history, the same round
//! trip also counting the distinct members of two days (`tally`, over
//! HyperLogLogs holding as many members), and the one Postgres statement each
//! tick adds (`raise_days` on a site with 400 days kept).
//!
//! ```text
//! cargo bench --bench ticker                 # REDIS_URL, default redis://127.0.0.1:6379;
//!                                             # DATABASE_URL for the history statement
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

mod support;

use support::{median, ms, pseudonym};

use std::time::Instant;

use axum_whos_online::{
    Day, HiddenUsers, HistoryStore, PostgresRecord, PresenceStore, RedisPresence,
};
use deadpool_redis::redis;

const WINDOW: i64 = 900;
const SPREAD: i64 = 960;
const ROUNDS: usize = 5;
const CHUNK: usize = 10_000;

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
    let today = chrono::Utc::now().date_naive();
    let days = [today.pred_opt().unwrap_or(today), today];
    println!(
        "{:>10} {:>12} {:>12} {:>14} {:>14} {:>16} {:>14} {:>16}",
        "members",
        "fill s",
        "pruned",
        "prune tick ms",
        "count tick ms",
        "bytes/member",
        "(IPv4 text)",
        "+distinct ms"
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

        // The day's distinct visitors, as the writes would have added them.
        let distinct_key = format!("{{{prefix}}}:distinct:visitors:{today}");
        let members: Vec<u64> = (0..n).collect();
        for chunk in members.chunks(CHUNK) {
            let mut cmd = redis::cmd("PFADD");
            cmd.arg(&distinct_key);
            for &i in chunk {
                cmd.arg(pseudonym(i));
            }
            cmd.query_async::<()>(&mut conn).await?;
        }

        let (mut prune_ticks, mut count_ticks, mut tally_ticks) =
            (Vec::new(), Vec::new(), Vec::new());
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
            let t = Instant::now();
            let tally = store.tally(cutoff, &days, HiddenUsers::default()).await?;
            tally_ticks.push(t.elapsed());
            assert_eq!(tally.distinct.len(), 1);
        }
        redis::cmd("UNLINK")
            .arg(&key)
            .arg(&distinct_key)
            .query_async::<()>(&mut conn)
            .await?;
        println!(
            "{n:>10} {:>12.2} {pruned:>12} {:>14.2} {:>14.2} {:>16} {:>14.0} {:>16.2}",
            fill_time.as_secs_f64(),
            ms(median(prune_ticks)),
            ms(median(count_ticks)),
            format!("{per_member:.0} ({per_member_info:.0})"),
            per_ipv4,
            ms(median(tally_ticks)),
        );
    }
    history_statement(today).await?;
    println!(
        "\nbytes/member: MEMORY USAGE of the set / members (INFO used_memory delta in ());\n\
         ticks: median of {ROUNDS}, wall time of one pipelined round trip from this client;\n\
         +distinct: a count tick that also counts two days' distinct members (PFCOUNT)."
    );
    Ok(())
}

/// The Postgres statement the history adds to each tick: raise today's row and
/// read the last 366 days back, on a site holding 400 days, in a database of
/// its own (dropped afterwards). Skipped without Postgres.
async fn history_statement(today: chrono::NaiveDate) -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let Ok(admin) = sqlx::PgPool::connect(&url).await else {
        eprintln!("ticker bench: history statement skipped, no Postgres at {url}");
        return Ok(());
    };
    let db = format!("whos_online_bench_{}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE \"{db}\""))
        .execute(&admin)
        .await?;
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    let pool = sqlx::PgPool::connect(&format!("{base}/{db}")).await?;
    axum_whos_online::migrate(&pool).await?;
    let store = PostgresRecord::new(pool.clone()).with_site("bench");
    let now = chrono::Utc::now();
    let past: Vec<Day> = (0..400u64)
        .map(|ago| Day {
            day: today - chrono::Days::new(ago),
            distinct_visitors: 1000 + ago,
            ..Day::seen(10, 200, 5, now)
        })
        .collect();
    store.raise_days(&past, None, today).await?;
    let from = today - chrono::Days::new(365);
    let mut raise = Vec::new();
    let mut read = Vec::new();
    for i in 0..50u64 {
        let seen = [Day {
            distinct_visitors: 5000 + i,
            ..Day::seen(11 + i, 300 + i, 6, now)
        }];
        let t = Instant::now();
        let days = store.raise_days(&seen, None, from).await?;
        raise.push(t.elapsed());
        assert_eq!(days.len(), 366);
        let t = Instant::now();
        store.raise_days(&[], None, from).await?;
        read.push(t.elapsed());
    }
    println!(
        "\nhistory statement (Postgres, 400 days kept, 366 read back), median of 50: \
         raise + read {:.2} ms, read only (instances without the lease) {:.2} ms",
        ms(median(raise)),
        ms(median(read)),
    );
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .execute(&admin)
        .await?;
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
