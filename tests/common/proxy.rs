//! A small TCP proxy for fault tests: put it in front of the shared Redis or
//! Postgres, then cut, slow or restore the link without touching the server.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways.
    Pass,
    /// Holds every chunk from the client this long before forwarding it, so each
    /// request is answered at least this late.
    Slow(Duration),
    /// Drops every open connection and closes new ones at once: the server
    /// looks down.
    Cut,
}

/// A proxy on a loopback port of its own; stops (with its connections) on drop.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Pass);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if *rx.borrow() == Mode::Cut {
                    drop(client);
                    continue;
                }
                tokio::spawn(serve(client, target, rx.clone()));
            }
        });
        Self { addr, mode, accept }
    }

    /// A proxy forwarding to `host:port` on loopback.
    pub async fn to_port(port: u16) -> Self {
        Self::start(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port())
    }

    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    pub fn slow(&self, delay: Duration) {
        self.mode.send_replace(Mode::Slow(delay));
    }

    pub fn restore(&self) {
        self.mode.send_replace(Mode::Pass);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Wakes every connection: the sender is about to go.
        self.mode.send_replace(Mode::Cut);
    }
}

async fn serve(client: TcpStream, target: SocketAddr, mode: watch::Receiver<Mode>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (from_client, to_client) = client.into_split();
    let (from_server, to_server) = server.into_split();
    // Either direction ending (EOF, error or cut) closes both.
    tokio::select! {
        () = pump(from_client, to_server, mode.clone(), true) => {}
        () = pump(from_server, to_client, mode, false) => {}
    }
}

/// Resolves when the proxy is cut (or gone).
async fn cut(mode: &mut watch::Receiver<Mode>) {
    let _ = mode.wait_for(|m| *m == Mode::Cut).await;
}

async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut mode: watch::Receiver<Mode>,
    slowed: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = cut(&mut mode) => return,
        };
        let delay = match *mode.borrow() {
            Mode::Slow(d) if slowed => Some(d),
            _ => None,
        };
        if let Some(d) = delay {
            tokio::select! {
                () = tokio::time::sleep(d) => {}
                () = cut(&mut mode) => return,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
