//! Metrics through the `metrics` facade (feature `metrics`, on by default).
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `whos_online_users` | gauge | users online at the last tick (hidden included) |
//! | `whos_online_visitors` | gauge | visitors online at the last tick |
//! | `whos_online_bots` | gauge | bots online at the last tick |
//! | `whos_online_max_users`, `whos_online_max_visitors` | gauge | the record |
//! | `whos_online_tick_seconds` | histogram | duration of a tick |
//! | `whos_online_flush_seconds` | histogram | duration of a presence write |
//! | `whos_online_<counter>_total` | counter | every [`CounterSnapshot`](crate::CounterSnapshot) field, e.g. `whos_online_reports_dropped_total` |
//!
//! Nothing is recorded per request: counters are published from the background
//! tasks, so the request path pays nothing for metrics.

use std::time::Duration;

use crate::CounterSnapshot;
use crate::presence::Counts;
use crate::record::Record;

#[cfg(feature = "metrics")]
pub(crate) fn tick(
    counts: &Counts,
    record: &Record,
    elapsed: Duration,
    counters: &CounterSnapshot,
) {
    metrics::gauge!("whos_online_users").set(counts.users as f64);
    metrics::gauge!("whos_online_visitors").set(counts.visitors as f64);
    metrics::gauge!("whos_online_bots").set(counts.bots as f64);
    metrics::gauge!("whos_online_max_users").set(record.max_users as f64);
    metrics::gauge!("whos_online_max_visitors").set(record.max_visitors as f64);
    metrics::histogram!("whos_online_tick_seconds").record(elapsed.as_secs_f64());
    publish(counters);
}

#[cfg(feature = "metrics")]
pub(crate) fn flush(elapsed: Duration, counters: &CounterSnapshot) {
    metrics::histogram!("whos_online_flush_seconds").record(elapsed.as_secs_f64());
    publish(counters);
}

#[cfg(feature = "metrics")]
fn publish(c: &CounterSnapshot) {
    for (name, value) in c.fields() {
        metrics::counter!(format!("whos_online_{name}_total")).absolute(value);
    }
}

#[cfg(not(feature = "metrics"))]
pub(crate) fn tick(_: &Counts, _: &Record, _: Duration, _: &CounterSnapshot) {}

#[cfg(not(feature = "metrics"))]
pub(crate) fn flush(_: Duration, _: &CounterSnapshot) {}
