//! Private Redis servers for fault tests: a `redis-server` of the test's own on a
//! loopback port, which a test may kill, restart or flush without touching the
//! shared server; and a three-master Redis Cluster. Every process is killed when
//! its guard drops, on success or on panic.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether `port` (and, for a cluster node, its bus port `port + 10000`) can be
/// bound on loopback right now.
fn free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A port in 20000..30000 (so the cluster bus port stays below 40000), derived
/// from the process id so parallel test processes rarely meet, and free now.
fn pick_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 500) * 20;
    for _ in 0..10_000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(20_000 + (base - 20_000 + offset) % 10_000).unwrap();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free loopback port for a private redis-server");
}

/// Answers `PING` with `+PONG` on `port`?
async fn pings(port: u16) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
    )
    .await
    else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")
    )
}

/// Whether `setpriv` with `--pdeathsig` can be run here.
fn has_setpriv() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// How to get the binaries the private servers need.
const INSTALL_REDIS: &str = "install it (Debian/Ubuntu: `sudo apt-get install redis-server`, \
     which brings redis-cli too; macOS: `brew install redis`) or run `.ci/run`, which \
     installs it. The fault, chaos, cluster, deploy and pseudonym tests start private \
     redis-server processes of their own, even when a Redis already answers at REDIS_URL";

/// Panics with how to install it unless `redis-server` can be run.
fn require_redis_server() {
    static FOUND: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(|| {
        match Command::new("redis-server")
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("`redis-server --version` failed ({s})")),
            Err(e) => Err(format!("cannot run `redis-server` ({e})")),
        }
    });
    if let Err(why) = found {
        panic!("redis-server must be installed: {why}; {INSTALL_REDIS}");
    }
}

/// A `redis-server` process of this test, on its own loopback port.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    cluster: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    async fn start_with(cluster: bool) -> Self {
        require_redis_server();
        for _attempt in 0..5 {
            let port = pick_port();
            let dir = std::env::temp_dir()
                .join(format!("whos-online-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut server = Self {
                port,
                dir,
                cluster,
                child: None,
            };
            if server.spawn().await {
                return server;
            }
            // Someone took the port between the check and the bind: next one.
        }
        panic!("could not start a private redis-server on a free port after 5 attempts");
    }

    /// Spawns the process on this server's port; whether it came up.
    async fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        // Through util-linux's `setpriv`, the server gets SIGKILL when the
        // thread that started it ends, so a test process that is killed (a CI
        // timeout) leaves no server behind; without `setpriv`, it is started
        // directly.
        let mut cmd = if has_setpriv() {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--", "redis-server"]);
            c
        } else {
            Command::new("redis-server")
        };
        cmd.args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(self.dir.join(format!("nodes-{port}.conf")));
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server must be installed ({e}); {INSTALL_REDIS}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if pings(self.port).await {
                self.child = Some(child);
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: most likely the port was taken
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process at once (SIGKILL): no goodbye to clients, and since
    /// nothing is persisted, its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty) and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn().await {
            assert!(
                Instant::now() < deadline,
                "redis-server did not come back on port {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `redis-cli -p <port> <args>` and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("redis-cli must be installed ({e}); {INSTALL_REDIS}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters (no replicas) on loopback ports.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with
    /// `redis-cli --cluster create`, and waits for `cluster_state:ok` on each.
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_with(true).await);
        }
        let cluster = Self { nodes };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("redis-cli must be installed ({e}); {INSTALL_REDIS}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = cluster.nodes.iter().all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .lines()
                    .any(|l| l.trim() == "cluster_state:ok")
            });
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "cluster_state never became ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
