//! Waiting for the signal to stop: Ctrl-C anywhere, and SIGTERM on Unix.

/// Completes when the process is asked to stop: on Ctrl-C (SIGINT) or, on Unix,
/// on SIGTERM, which Docker, systemd and Kubernetes send to stop a service.
///
/// Hand it to axum's `with_graceful_shutdown`, then call
/// [`WhosOnline::shutdown`](crate::WhosOnline::shutdown) once the server has
/// stopped, so that queued reports are written and the tick lease is released
/// before the process exits:
///
/// ```no_run
/// use std::net::SocketAddr;
/// use axum::{Router, routing::get};
/// use axum_whos_online::WhosOnline;
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let whos = WhosOnline::builder().build()?;
///     let app = Router::new()
///         .route("/", get(|| async { "hello" }))
///         .merge(whos.router())
///         .layer(whos.layer());
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
///     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
///         // The handle's signal also ends the event streams of `whos.router()`.
///         .with_graceful_shutdown(whos.shutdown_signal())
///         .await?;
///     whos.shutdown().await?; // writes every queued report, releases the tick lease
///     Ok(())
/// }
/// ```
///
/// A signal handler that cannot be installed is logged at error level (through
/// `tracing`) and the function waits for the other signal; if neither can be
/// installed it never completes, and the process runs until it is killed.
/// Tokio's signal handling needs a runtime with IO enabled (`#[tokio::main]`,
/// or `enable_all` / `enable_io` on a runtime builder). Once installed, the
/// handlers stay: a second Ctrl-C during shutdown does not kill the process,
/// which stops when `shutdown` returns (within
/// [`shutdown_grace`](crate::Builder::shutdown_grace) of a failing store).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "whos-online: cannot listen for Ctrl-C; waiting for SIGTERM only");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                // `recv` never answers `None` for a stream that is still held.
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "whos-online: cannot listen for SIGTERM; waiting for Ctrl-C only");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("whos-online: Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("whos-online: SIGTERM received, shutting down"),
    }
}
