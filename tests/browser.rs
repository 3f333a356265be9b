//! The demo page in a real browser: headless Chromium loads it, visitors arrive
//! from other loopback addresses, and the footer shows them without a reload
//! and without polling, through `GET /online/events`; and the page draws the
//! daily history as a chart, checked in the DOM and saved as a screenshot.
//!
//! Chromium is driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: NUL-separated JSON on file descriptors 3 and 4),
//! so the test needs no WebDriver and no WebSocket client. `.ci/run` installs
//! Debian's `chromium` when it is missing; `CHROMIUM` names another binary.

mod common;
#[path = "../examples/demo.rs"]
#[allow(dead_code)]
mod demo;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A browser's `User-Agent`, so that the visitors are not taken for bots.
const AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                     Chrome/120.0 Safari/537.36";

fn chromium() -> String {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return path;
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if found {
            return name.to_owned();
        }
    }
    panic!("no Chromium: install Debian's `chromium` (.ci/run does), or name a binary in CHROMIUM");
}

/// A headless Chromium and one DevTools session on a page.
struct Browser {
    child: Child,
    to: File,
    from: BufReader<File>,
    next_id: u64,
    session: Option<String>,
    _profile: TempDir,
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    fn launch() -> Self {
        let (to_read, to_write) = std::io::pipe().unwrap();
        let (from_read, from_write) = std::io::pipe().unwrap();
        let profile = TempDir(std::env::temp_dir().join(format!(
            "whos-online-chromium-{}-{}",
            std::process::id(),
            common::prefix()
        )));
        let mut cmd = Command::new(chromium());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let (read_fd, write_fd) = (to_read.as_raw_fd(), from_write.as_raw_fd());
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl,
        // dup2) on descriptors this process owns.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way first, in case either is already 3 or 4.
                let r = libc::fcntl(read_fd, libc::F_DUPFD_CLOEXEC, 10);
                let w = libc::fcntl(write_fd, libc::F_DUPFD_CLOEXEC, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("Chromium starts");
        drop((to_read, from_write));
        Self {
            child,
            to: File::from(std::os::fd::OwnedFd::from(to_write)),
            from: BufReader::new(File::from(std::os::fd::OwnedFd::from(from_read))),
            next_id: 1,
            session: None,
            _profile: profile,
        }
    }

    /// Calls `method` (on the page session once attached) and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        loop {
            let mut reply = Vec::new();
            let n = self.from.read_until(0, &mut reply).unwrap();
            assert!(n > 0, "Chromium closed the pipe during {method}");
            reply.pop();
            let reply: Value = serde_json::from_slice(&reply).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
            // An event: not what we wait for.
        }
    }

    /// Opens `url` in a new page and attaches to it.
    fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({"url": url}));
        let attached = self.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        self.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
    }

    /// Evaluates a JavaScript expression in the page; its value.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` every 50 ms until `done` holds of its value.
    fn wait_for(&mut self, what: &str, expression: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let value = self.eval(expression);
            if done(&value) {
                return value;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}: still {value} after 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /` with a browser's agent from the loopback address `from`.
async fn visit_from(server: SocketAddr, from: &str) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {server}\r\nUser-Agent: {AGENT}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
}

/// Serves `router` on a loopback port until `whos` is shut down: its address,
/// and the task serving it.
async fn serve(
    router: axum::Router,
    whos: &axum_whos_online::WhosOnline,
) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let serve = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(whos.shutdown_signal());
    (server, tokio::spawn(async move { serve.await }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_updates_live_in_a_browser() {
    let config = demo::DemoConfig {
        prefix: common::prefix(),
        ..demo::DemoConfig::default()
    };
    let (router, whos) = demo::app(&config).await.expect("demo app starts");
    let (server, serving) = serve(router, &whos).await;

    let url = format!("http://{server}/");
    let (mut browser, visitors_at_load) = tokio::task::block_in_place(|| {
        let mut browser = Browser::launch();
        browser.open(&url);
        browser.wait_for(
            "the event stream opens",
            "document.getElementById('live') && document.getElementById('live').textContent",
            |v| v == "Live updates: on.",
        );
        // Set in this page only: a reload would lose it.
        browser.eval("window.notReloaded = true");
        let count = browser.eval("document.getElementById('visitor-count').textContent");
        (browser, count)
    });
    assert_eq!(visitors_at_load, "0");

    // Five visitors from other loopback addresses. Headless Chromium itself
    // says so in its User-Agent, so the default bot filter counts it as a bot.
    for i in 2..=6 {
        visit_from(server, &format!("127.0.0.{i}")).await;
    }
    tokio::task::block_in_place(|| {
        browser.wait_for(
            "the footer counts the new visitors",
            "document.getElementById('visitor-count').textContent",
            |v| v == "5",
        );
        assert_eq!(browser.eval("window.notReloaded === true"), json!(true));
        assert_eq!(
            browser.eval("document.getElementById('bot-count').textContent"),
            json!("1")
        );
        let as_of = browser.eval("document.getElementById('as-of').textContent");
        assert!(as_of.as_str().unwrap().starts_with("as of "), "{as_of}");
        // What the page fetched after loading: no `/online` or `/stats` polls
        // (the open event stream is not listed until it ends; the browser
        // asks for a favicon on its own).
        let fetched = browser.eval(
            "performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)\
             .filter(p => p !== '/favicon.ico')",
        );
        assert_eq!(fetched, json!([]), "{fetched}");
        browser.session = None;
        browser.call("Browser.close", json!({}));
    });
    assert_eq!(whos.view().visitor_count(), 5);
    assert!(whos.counters().streams_opened >= 1);

    whos.end_streams();
    whos.shutdown().await.unwrap();
    serving.abort();
}

/// The history chart: days seeded in Postgres are drawn as the server sent
/// them, one bar per day, the tallest where the most distinct visitors were,
/// the lines through the peaks; nothing is fetched from elsewhere. The picture
/// is saved as `target/history-chart.png` for a person to look at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_draws_the_history() {
    let pool = common::fresh_database().await;
    axum_whos_online::migrate(&pool).await.unwrap();
    let db = pool.connect_options().get_database().unwrap().to_owned();
    let prefix = common::prefix();
    let today = chrono::Utc::now().date_naive();
    // Within the last 30 days even if midnight passes during the test.
    let seeded = [
        (28u64, 2i64, 10i64, 50i64),
        (10, 3, 40, 120),
        (1, 5, 20, 80),
    ];
    for (ago, users, visitors, distinct) in seeded {
        let day = today - chrono::Days::new(ago);
        sqlx::query(
            "INSERT INTO whos_online_day (site, day, max_users, max_visitors, distinct_visitors)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&prefix)
        .bind(day)
        .bind(users)
        .bind(visitors)
        .bind(distinct)
        .execute(&pool)
        .await
        .unwrap();
    }
    let config = demo::DemoConfig {
        prefix,
        database_url: Some(format!(
            "{}/{db}",
            common::url_without_db(&common::database_url())
        )),
        ..demo::DemoConfig::default()
    };
    let (router, whos) = demo::app(&config).await.expect("demo app starts");
    // A tick reads the history (the background one may not have run yet).
    whos.tick_now().await.unwrap();
    assert!(whos.history(30).is_ok());
    let (server, serving) = serve(router, &whos).await;

    let url = format!("http://{server}/");
    let tallest = (today - chrono::Days::new(10)).to_string();
    tokio::task::block_in_place(|| {
        let mut browser = Browser::launch();
        browser.open(&url);
        browser.wait_for(
            "the chart is drawn",
            "document.querySelectorAll('#history rect.distinct').length",
            |v| v == 30,
        );
        let bars = browser.eval(
            "[...document.querySelectorAll('#history rect.distinct')]\
             .map(r => [r.dataset.day, +r.dataset.value, r.getBoundingClientRect().height])",
        );
        let bars = bars.as_array().expect("bars").clone();
        if bars.is_empty() {
            let html = browser.eval("document.body.innerHTML");
            panic!("no bars in {html}");
        }
        assert_eq!(bars.len(), 30, "{bars:?}");
        // Each bar shows its day's seeded value, or 0; the last is today's
        // (the server's today: the test may cross midnight).
        let server_today = whos.history(1).unwrap().days[0].day.to_string();
        assert_eq!(bars[29][0], json!(server_today), "ends today");
        for bar in &bars {
            let expected = seeded
                .iter()
                .find(|(ago, ..)| (today - chrono::Days::new(*ago)).to_string() == bar[0])
                .map_or(0, |s| s.3);
            assert_eq!(bar[1], json!(expected), "{bar:?}");
        }
        // Drawn to scale: the tallest bar on screen is the busiest day, and a
        // day without visitors has no height.
        let tallest_drawn = bars
            .iter()
            .max_by(|a, b| a[2].as_f64().unwrap().total_cmp(&b[2].as_f64().unwrap()))
            .unwrap();
        assert_eq!(tallest_drawn[0], json!(tallest));
        assert!(
            tallest_drawn[2].as_f64().unwrap() > 100.0,
            "{tallest_drawn:?}"
        );
        let empty = bars.iter().find(|b| b[1] == json!(0)).unwrap();
        assert_eq!(empty[2], json!(0), "{empty:?}");
        // The two peak lines, a point per day, and a visible chart.
        for class in ["peak-visitors", "peak-users"] {
            let points = browser.eval(&format!(
                "document.querySelector('#history .{class}').points.numberOfItems"
            ));
            assert_eq!(points, json!(30), "{class}");
        }
        let width =
            browser.eval("document.querySelector('#history svg').getBoundingClientRect().width");
        assert!(width.as_f64().unwrap() > 300.0, "{width}");
        // Nothing fetched from anywhere but this server.
        let elsewhere = browser.eval(
            "performance.getEntriesByType('resource').map(e => e.name)\
             .filter(n => !n.startsWith(location.origin))",
        );
        assert_eq!(elsewhere, json!([]));
        // The picture, for a person to look at.
        let shot = browser.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64_decode(shot["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"));
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/history-chart.png");
        std::fs::write(&out, png).unwrap();
        browser.session = None;
        browser.call("Browser.close", json!({}));
    });
    whos.end_streams();
    whos.shutdown().await.unwrap();
    serving.abort();
}

/// Standard base64 (with padding), as the DevTools protocol sends images.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| u32::from(value(c))).collect();
        let n = v.iter().fold(0u32, |acc, &x| (acc << 6) | x) << (6 * (4 - v.len()));
        out.extend_from_slice(&n.to_be_bytes()[1..v.len()]);
    }
    out
}
