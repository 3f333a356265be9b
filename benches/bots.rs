//! Cost of the bot check on its own: `BotFilter::is_bot` and `classify` on agents
//! the filter saw lately (answered by its verdict cache) and on agents it has not
//! (a scan of the agent by the automaton, then a store in the cache).
//!
//! ```text
//! cargo bench --bench bots
//! ```
//!
//! The "new" cases rotate through 4,096 distinct agents, sixteen times the
//! cache's slots, so nearly every call misses the cache and scans.

use std::hint::black_box;

use axum_whos_online::BotFilter;
use criterion::Criterion;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) \
                             AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 \
                             Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) \
                         AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.204 \
                         Mobile Safari/537.36 (compatible; Googlebot/2.1; \
                         +http://www.google.com/bot.html)";

/// Distinct agents: more than the cache holds.
const DISTINCT: usize = 4096;

fn distinct(make: impl Fn(usize) -> String) -> Vec<String> {
    (0..DISTINCT).map(make).collect()
}

/// `check` on each of `agents` in turn.
fn rotate(c: &mut Criterion, name: &str, agents: &[String], check: impl Fn(&str) -> bool) {
    let mut i = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % agents.len();
            check(black_box(&agents[i]))
        })
    });
}

fn benches(c: &mut Criterion) {
    let f = BotFilter::default();
    for (name, agent) in [
        ("is_bot, cached: Chrome", CHROME),
        ("is_bot, cached: Safari on iPhone", SAFARI_IPHONE),
        ("is_bot, cached: Googlebot", GOOGLEBOT),
    ] {
        c.bench_function(name, |b| b.iter(|| f.is_bot(black_box(agent))));
    }
    c.bench_function("classify, cached: Googlebot", |b| {
        b.iter(|| f.classify(black_box(GOOGLEBOT)))
    });

    let chrome = distinct(|i| {
        format!(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
             (KHTML, like Gecko) Chrome/131.0.{i}.0 Safari/537.36"
        )
    });
    let safari = distinct(|i| {
        format!(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.{i}"
        )
    });
    let googlebot = distinct(|i| {
        format!(
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 \
             (KHTML, like Gecko) Chrome/131.0.{i}.204 Mobile Safari/537.36 \
             (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
        )
    });
    let unknown = distinct(|i| format!("Mozilla/5.0 (compatible; Example{i}Crawler/1.0)"));
    for (name, agents) in [
        ("is_bot, new: Chrome", &chrome),
        ("is_bot, new: Safari on iPhone", &safari),
        ("is_bot, new: Googlebot smartphone", &googlebot),
        ("is_bot, new: an unknown crawler", &unknown),
    ] {
        rotate(c, name, agents, |a| f.is_bot(a));
    }
    rotate(c, "classify, new: Googlebot smartphone", &googlebot, |a| {
        f.classify(a).is_some()
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
