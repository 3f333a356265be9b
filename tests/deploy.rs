//! Deployment: the demo, run as its own process the way Docker, systemd or
//! Kubernetes run a service, stops cleanly on SIGTERM: it exits 0, the reports
//! it had queued are in Redis, and its tick lease is released.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::servers::RedisServer;
use deadpool_redis::redis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The compiled demo, `target/<profile>/examples/demo`, next to this test's
/// own binary (`target/<profile>/deps/deploy-*`). `cargo test` builds the
/// examples; `cargo test --test deploy` alone does not.
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lies in target/<profile>/deps");
    let demo = profile_dir
        .join("examples")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        demo.is_file(),
        "the demo binary is not at {}: run `cargo build --examples` first \
         (`cargo test` builds it, `cargo test --test deploy` alone does not)",
        demo.display()
    );
    // A binary older than its sources would test old code.
    let built = modified(&demo);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![root.join("examples/demo.rs"), root.join("Cargo.toml")];
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                sources.push(path);
            }
        }
    }
    if let Some(newer) = sources.iter().find(|p| modified(p) > built) {
        panic!(
            "the demo binary {} is older than {}: run `cargo build --examples` first",
            demo.display(),
            newer.display()
        );
    }
    demo
}

fn modified(path: &std::path::Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
}

/// A loopback port that is free now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The demo process; killed if the test ends before it exits.
struct DemoProcess {
    child: Child,
    log: PathBuf,
}

impl DemoProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `limit` for the process to exit.
    async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One HTTP/1.1 request on its own connection; the whole answer as text.
async fn http(addr: SocketAddr, request: &str) -> String {
    http_from("127.0.0.1", addr, request).await
}

/// [`http`] from the loopback address `from` (any `127.0.0.N` on Linux).
async fn http_from(from: &str, addr: SocketAddr, request: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .expect("bind a loopback address");
    let mut stream = socket.connect(addr).await.expect("connect to the demo");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the demo answers within 10 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn redis_query<T: redis::FromRedisValue>(pool: &deadpool_redis::Pool, cmd: &redis::Cmd) -> T {
    let mut conn = pool.get().await.expect("private redis-server");
    cmd.query_async(&mut conn).await.expect("redis command")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_stops_cleanly_on_sigterm() {
    let demo = demo_binary();
    let redis_server = RedisServer::start().await;
    let pool = axum_whos_online::redis_pool(&redis_server.url()).unwrap();
    let prefix = common::prefix();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let log = std::env::temp_dir().join(format!("{prefix}-demo.log"));
    let child = Command::new(&demo)
        .env("BIND", addr.to_string())
        .env("REDIS_URL", redis_server.url())
        .env("WHOS_ONLINE_PREFIX", &prefix)
        .env("RUST_LOG", "info")
        .env_remove("DATABASE_URL")
        .env_remove("WHOS_ONLINE_CLIENT_IP_SOURCE")
        .env_remove("WHOS_ONLINE_WINDOW_SECS")
        .env_remove("WHOS_ONLINE_TICK_SECS")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", demo.display()));
    let mut process = DemoProcess { child, log };

    // Up and listening.
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() {
        if let Some(status) = process.child.try_wait().unwrap() {
            panic!("the demo exited early ({status}):\n{}", process.log());
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not listen on {addr} within 20 s:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The first background tick takes the tick lease.
    let lease = format!("{{{prefix}}}:tick-lease");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis_query::<i64>(&pool, redis::cmd("EXISTS").arg(&lease)).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the demo never took the tick lease {lease}:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A visitor's page view (from another address: a user's report removes
    // the visitor entry of its own), then alice logs in and views the page.
    let page = http_from(
        "127.0.0.2",
        addr,
        "GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let body = "username=alice";
    let login = http(
        addr,
        &format!(
            "POST /login HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(login.starts_with("HTTP/1.1 303"), "{login}");
    let cookie = login
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next().unwrap_or("").to_owned())
        })
        .unwrap_or_else(|| panic!("no session cookie:\n{login}"));
    let page = http(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: demo\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(
        page.contains("Logged in as <strong>alice</strong>"),
        "{page}"
    );

    // Stop it the way a service manager does, at once: the reports may still be queued.
    let pid = process.child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success(), "kill -TERM {pid} failed");
    let status = process.exit_within(Duration::from_secs(10)).await;
    let log = process.log();
    assert!(
        status.is_some(),
        "the demo did not exit within 10 s of SIGTERM:\n{log}"
    );
    assert_eq!(
        status.unwrap().code(),
        Some(0),
        "the demo did not exit 0 on SIGTERM ({:?}):\n{log}",
        status
    );

    // Everything it had queued was written, and the lease is free for another instance.
    let users: Vec<String> = redis_query(
        &pool,
        redis::cmd("ZRANGE")
            .arg(format!("{{{prefix}}}:users"))
            .arg(0)
            .arg(-1),
    )
    .await;
    assert_eq!(
        users,
        ["alice"],
        "users in Redis after SIGTERM; log:\n{log}"
    );
    let visitors: i64 = redis_query(
        &pool,
        redis::cmd("ZCARD").arg(format!("{{{prefix}}}:visitors")),
    )
    .await;
    assert_eq!(visitors, 1, "visitors in Redis after SIGTERM; log:\n{log}");
    let held: i64 = redis_query(&pool, redis::cmd("EXISTS").arg(&lease)).await;
    assert_eq!(held, 0, "the tick lease {lease} is still held; log:\n{log}");
}
