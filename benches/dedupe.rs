//! The de-duplication table of the layer against a `moka` sync cache doing the
//! same job (max capacity 65,536 entries, time to live = resolution, value = the
//! time it was handed on).
//!
//! ```text
//! cargo bench --bench dedupe --features bench-internals
//! ```
//!
//! The table is not public API: the unstable `bench-internals` feature exports
//! it for this bench alone (`required-features` in Cargo.toml).
//!
//! Cases: a hit (a member of a 11,000-member working set seen again: the common
//! case on a busy site), a miss (always a new visitor: a flood), hits from two
//! threads at once, and the heap each holds after a million distinct visitors
//! (counted by a wrapping global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use axum_whos_online::{BenchDedupe, Clock, SystemClock};
use criterion::Criterion;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const RESOLUTION: Duration = Duration::from_secs(30);
const CAPACITY: u64 = 64 * 1024;
const WORKING_SET: u32 = 11_000;

trait Table: Sync {
    fn report(&self, ip: IpAddr) -> bool;
}

impl Table for BenchDedupe {
    fn report(&self, ip: IpAddr) -> bool {
        self.report_visitor(ip)
    }
}

struct Moka {
    cache: moka::sync::Cache<IpAddr, i64>,
}

impl Moka {
    fn new() -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(RESOLUTION)
                .build(),
        }
    }
}

impl Table for Moka {
    fn report(&self, ip: IpAddr) -> bool {
        let now = SystemClock.unix_secs();
        match self.cache.get(&ip) {
            Some(at) if (0..RESOLUTION.as_secs() as i64).contains(&(now - at)) => false,
            _ => {
                self.cache.insert(ip, now);
                true
            }
        }
    }
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xC612_0000_u32.wrapping_add(i)))
}

fn bench_table(c: &mut Criterion, name: &str, table: &dyn Table) {
    for i in 0..WORKING_SET {
        table.report(ip(i));
    }
    let mut k = 0u32;
    c.bench_function(&format!("{name}: hit"), |b| {
        b.iter(|| {
            k = (k + 1) % WORKING_SET;
            std::hint::black_box(table.report(ip(k)))
        })
    });
    c.bench_function(&format!("{name}: hit, 2 threads"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2u32 {
                    s.spawn(move || {
                        for i in 0..iters.div_ceil(2) {
                            let k = (i as u32).wrapping_mul(7919).wrapping_add(t * 5000);
                            std::hint::black_box(table.report(ip(k % WORKING_SET)));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    let mut fresh = 1_000_000_u32;
    c.bench_function(&format!("{name}: miss (new visitor)"), |b| {
        b.iter(|| {
            fresh = fresh.wrapping_add(1);
            std::hint::black_box(table.report(ip(fresh)))
        })
    });
}

/// Heap held by a table after a million distinct visitors.
fn heap_after_flood(make: &dyn Fn() -> Box<dyn Table>) -> f64 {
    let before = LIVE.load(Relaxed);
    let table = make();
    for i in 0..1_000_000 {
        table.report(ip(i));
    }
    let held = LIVE.load(Relaxed) - before;
    drop(table);
    held as f64 / (1024.0 * 1024.0)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    // Part of every check: reading the clock.
    c.bench_function("SystemClock::unix_secs", |b| {
        b.iter(|| std::hint::black_box(SystemClock.unix_secs()))
    });
    c.bench_function("SystemTime::now, as unix seconds", |b| {
        b.iter(|| {
            std::hint::black_box(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            )
        })
    });
    let ours = BenchDedupe::new(RESOLUTION, SystemClock);
    bench_table(&mut c, "whos-online table", &ours);
    let moka = Moka::new();
    bench_table(&mut c, "moka sync cache", &moka);
    c.final_summary();
    if std::env::args().any(|a| a == "--test") {
        return;
    }

    let ours_heap = heap_after_flood(&|| Box::new(BenchDedupe::new(RESOLUTION, SystemClock)));
    let moka_heap = heap_after_flood(&|| Box::new(Moka::new()));
    // moka evicts in batches; let it catch up, as it would between requests.
    let before = LIVE.load(Relaxed);
    let m = Moka::new();
    for i in 0..1_000_000 {
        m.report(ip(i));
    }
    m.cache.run_pending_tasks();
    let moka_settled = (LIVE.load(Relaxed) - before) as f64 / (1024.0 * 1024.0);
    println!("\nheap held after 1,000,000 distinct visitors:");
    println!("  whos-online table  {ours_heap:>8.1} MiB (fixed)");
    println!(
        "  moka sync cache    {moka_heap:>8.1} MiB ({moka_settled:.1} MiB after run_pending_tasks)"
    );
}
