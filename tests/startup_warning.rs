//! The warning at start when Redis keeps the visitors' day keys. A test binary
//! of its own: `tracing` caches, per call site, whether anyone listens, and a
//! test on another thread of the same process logging the same call site
//! without a subscriber can make the scoped subscriber here miss the line.

mod common;

use axum_whos_online::WhosOnline;

/// Log lines written while `f` runs, at any level.
fn logs_of(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let out = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || out.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buf.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

/// With Redis and no visitor secret, the day keys sit in Redis beside the
/// visitors: `build()` warns once, naming the setting. With a secret, or with
/// the in-memory store, it says nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_without_a_visitor_secret_warns_at_start() {
    let redis = || axum_whos_online::redis_pool(&common::redis_url()).unwrap();
    let mut built = Vec::new();
    let warned = logs_of(|| built.push(WhosOnline::builder().redis(redis()).build().unwrap()));
    assert!(warned.contains("WARN"), "{warned}");
    assert!(warned.contains("visitor_secret"), "{warned}");
    assert!(warned.contains("WHOS_ONLINE_VISITOR_SECRET"), "{warned}");
    for quiet in [
        WhosOnline::builder().redis(redis()).visitor_secret("s"),
        WhosOnline::builder(),
    ] {
        let said = logs_of(|| built.push(quiet.build().unwrap()));
        assert!(!said.contains("visitor_secret"), "{said}");
    }
    for whos in built {
        whos.shutdown().await.unwrap();
    }
}
