//! Metrics through the `metrics` facade: gauges at each tick, counters mirrored
//! from the crate's own counters. Its own test binary, since the recorder is global.

mod common;

use common::{Site, Stack};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_publish_gauges_and_counters() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this binary");

    let site = Site::new(Stack::Memory).await;
    site.visit_as("alice", "10.0.0.1").await;
    site.visit("10.0.0.2").await;
    site.visit("10.0.0.3").await;
    let mut req = common::request_from("66.249.66.1", "/");
    req.headers_mut().insert(
        "user-agent",
        "Googlebot/2.1 (+http://www.google.com/bot.html)"
            .parse()
            .unwrap(),
    );
    site.send(req).await;
    site.whos.flush().await.unwrap();
    site.whos.tick_now().await.unwrap();

    let values: Vec<(String, DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect();
    let get = |name: &str| {
        values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no metric {name} in {values:?}"))
    };
    let gauge = |name: &str| match get(name) {
        DebugValue::Gauge(v) => v.into_inner(),
        other => panic!("{name} is {other:?}"),
    };
    let counter = |name: &str| match get(name) {
        DebugValue::Counter(v) => *v,
        other => panic!("{name} is {other:?}"),
    };
    assert_eq!(gauge("whos_online_users"), 1.0);
    assert_eq!(gauge("whos_online_visitors"), 2.0);
    assert_eq!(gauge("whos_online_bots"), 1.0);
    assert_eq!(gauge("whos_online_max_users"), 1.0);
    assert_eq!(counter("whos_online_reports_queued_total"), 4);
    assert_eq!(counter("whos_online_ticks_total"), 1);
    assert_eq!(counter("whos_online_reports_dropped_total"), 0);
    assert!(matches!(get("whos_online_tick_seconds"), DebugValue::Histogram(h) if h.len() == 1));
    assert!(matches!(get("whos_online_flush_seconds"), DebugValue::Histogram(h) if !h.is_empty()));
}
