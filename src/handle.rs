//! The handle: one place that owns the stores, the queue and the background tasks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Builder;
use crate::counters::{CounterSnapshot, Counters};
use crate::layer::{Reporting, WhosOnlineLayer};
use crate::presence::{HiddenUsers, Online, PresenceStore};
use crate::queue::Msg;
use crate::ticker::{TickReport, Ticker};
use crate::{Error, Record, Result};

pub(crate) struct Shared {
    pub(crate) presence: Arc<dyn PresenceStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) window: Duration,
    pub(crate) counters: Arc<Counters>,
    pub(crate) reporting: Arc<Reporting>,
    /// Prunes, counts and raises the record; shared with its background task.
    pub(crate) ticker: Arc<Ticker>,
    /// Whether the fragment serves `GET /openapi.json` (feature `openapi`).
    #[cfg_attr(not(feature = "openapi"), allow(dead_code))]
    pub(crate) serve_openapi: bool,
    /// The ceiling of `limit` in `GET /online`.
    pub(crate) max_limit: u32,
    pub(crate) hidden_users: HiddenUsers,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: Mutex<Tasks>,
}

/// The background tasks, until shutdown takes them.
#[derive(Default)]
pub(crate) struct Tasks {
    pub(crate) reporter: Option<JoinHandle<Result<()>>>,
    pub(crate) ticker: Option<JoinHandle<()>>,
}

impl Shared {
    pub(crate) fn window_secs(&self) -> i64 {
        i64::try_from(self.window.as_secs()).unwrap_or(i64::MAX)
    }

    fn tx(&self) -> &mpsc::Sender<Msg> {
        &self.reporting.tx
    }
}

/// Who's online for one application instance: a cheap, cloneable handle.
///
/// Built with [`WhosOnline::builder`]; gives the [`layer`](Self::layer), the
/// [`router`](Self::router) fragment, and a library API for admin pages.
/// The background reporter and ticker run until [`shutdown`](Self::shutdown).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
/// let whos = axum_whos_online::WhosOnline::builder().build()?;
/// let online = whos.online(100).await?;
/// assert_eq!(online.user_count, 0);
/// assert_eq!(whos.record().await?.max_users, 0);
/// whos.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WhosOnline {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for WhosOnline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhosOnline")
            .field("window", &self.shared.window)
            .finish_non_exhaustive()
    }
}

impl WhosOnline {
    /// Starts configuring; every setting has a default.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The layer that reports requests. Add it with `Router::layer`, inside any
    /// session layer the user hook reads from; or, cheaper, around the whole
    /// router: `Router::layer` wraps every route in a boxed copy that axum clones
    /// on each request (see `docs/performance.md`).
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use axum::{Router, extract::Request, routing::get};
    /// use tower::Layer;
    /// use tower_sessions::{MemoryStore, SessionManagerLayer};
    /// use axum_whos_online::{SessionUser, WhosOnline};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let whos = WhosOnline::builder()
    ///     .identify_users(SessionUser::new("username"))
    ///     .build()?;
    /// let router = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .merge(whos.router());
    /// // The layer around the router, the session layer around both.
    /// let app = SessionManagerLayer::new(MemoryStore::default())
    ///     .layer(whos.layer().layer(router));
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(
    ///     listener,
    ///     axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app),
    /// )
    /// .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn layer(&self) -> WhosOnlineLayer {
        WhosOnlineLayer::new(Arc::clone(&self.shared.reporting))
    }

    /// The window: how long after the last request a member still counts as online.
    pub fn window(&self) -> Duration {
        self.shared.window
    }

    /// Who is online now: at most `limit` names (the most recently seen, sorted by
    /// name) and complete counts. Counts only members seen within the window, even
    /// if the ticker has not pruned yet.
    pub async fn online(&self, limit: usize) -> Result<Online> {
        let cutoff = self.shared.clock.unix_secs() - self.shared.window_secs();
        let online = self.shared.presence.online(cutoff, limit).await?;
        Ok(self.shared.hidden_users.online(online))
    }

    /// Names of the users online now (at most `limit`, the most recently seen,
    /// sorted by name; hidden users never appear).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
    /// # let whos = axum_whos_online::WhosOnline::builder().build()?;
    /// for name in whos.users_online(50).await? {
    ///     println!("{name}");
    /// }
    /// # whos.shutdown().await?; Ok(()) }
    /// ```
    pub async fn users_online(&self, limit: usize) -> Result<Vec<String>> {
        Ok(self.online(limit).await?.users)
    }

    /// How many users are online now, hidden ones included.
    pub async fn user_count(&self) -> Result<u64> {
        Ok(self.online(0).await?.user_count)
    }

    /// How many anonymous visitors are online now.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
    /// # let whos = axum_whos_online::WhosOnline::builder().build()?;
    /// let guests = whos.visitor_count().await?;
    /// println!("{guests} guests");
    /// # whos.shutdown().await?; Ok(()) }
    /// ```
    pub async fn visitor_count(&self) -> Result<u64> {
        Ok(self.online(0).await?.visitor_count)
    }

    /// How many bots are online now.
    pub async fn bot_count(&self) -> Result<u64> {
        Ok(self.online(0).await?.bot_count)
    }

    /// The all-time record: from the Redis cache, else from the record store (the
    /// cache is then refilled). Errors only when neither store answers.
    pub async fn record(&self) -> Result<Record> {
        self.shared.ticker.current_record().await
    }

    /// Lowers the all-time record, for an admin tool repairing a wrong one (a
    /// flood of bots, a test against production): to the given counts, or to
    /// the counts online now. A count left as it is keeps its date; a lowered
    /// one is dated now (no date when it becomes `0`). Counts above the stored
    /// record are refused ([`Error::ResetAboveRecord`]): raising is the ticker's
    /// job, and it raises a too-low record again at its next tick.
    ///
    /// The reset bumps the record's generation, in Postgres and in the cache
    /// (which is replaced), so that every instance drops what it held of the
    /// old record at its next tick, and a raise computed before the reset is
    /// not written. Returns the record as stored. A failed cache write is
    /// retried at the next ticks; only a failure of the record store is an error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
    /// use axum_whos_online::RecordReset;
    /// # let whos = axum_whos_online::WhosOnline::builder().build()?;
    /// let record = whos.reset_record(RecordReset::To { users: 0, visitors: 0 }).await?;
    /// assert_eq!((record.max_users, record.generation), (0, 1));
    /// # whos.shutdown().await; Ok(()) }
    /// ```
    pub async fn reset_record(&self, to: crate::RecordReset) -> Result<Record> {
        self.shared.ticker.reset_record(to).await
    }

    /// Runs one tick now (prune, count, raise the record), whatever the interval.
    /// For tests and admin tools; ticks of one instance never overlap.
    pub async fn tick_now(&self) -> Result<TickReport> {
        self.shared.ticker.tick().await
    }

    /// Writes every report queued so far to the presence store, and waits for it.
    ///
    /// Returns the write's error ([`Error::Unwritten`]) when it fails; its
    /// members stay pending for the next write. While writes are failing, a
    /// flush does not add an attempt: it waits for the next scheduled one (at
    /// most one [`flush_interval`](crate::Builder::flush_interval)), so callers
    /// cannot hammer a store that is down. Not meant for the request path.
    pub async fn flush(&self) -> Result<()> {
        let (ack, done) = oneshot::channel();
        self.shared
            .tx()
            .send(Msg::Flush(ack))
            .await
            .map_err(|_| Error::Shutdown)?;
        done.await.map_err(|_| Error::Shutdown)?
    }

    /// What the background machinery did and dropped so far.
    pub fn counters(&self) -> CounterSnapshot {
        self.shared.counters.snapshot()
    }

    /// Stops the ticker and the reporter after writing every queued report.
    /// Reports arriving afterwards are dropped and counted. Idempotent: a later
    /// call returns `Ok`.
    ///
    /// When the presence store fails, the last writes are retried for the
    /// [`shutdown_grace`](crate::Builder::shutdown_grace) period; what still
    /// could not be written is logged at error level and returned as
    /// [`Error::Unwritten`], with the number of members lost.
    pub async fn shutdown(&self) -> Result<()> {
        self.shared.cancel.cancel();
        let tasks = std::mem::take(&mut *crate::sync::lock(&self.shared.tasks));
        if let Some(ticker) = tasks.ticker
            && let Err(e) = ticker.await
        {
            tracing::error!(error = %e, "whos-online: ticker task failed");
        }
        match tasks.reporter {
            None => Ok(()),
            Some(reporter) => reporter.await.map_err(|e| {
                tracing::error!(error = %e, "whos-online: reporter task failed");
                Error::Task(e.to_string())
            })?,
        }
    }

    /// This instance's id: the value it writes into the tick lease
    /// (`{prefix}:tick-lease`) when it is the one that ticks.
    pub fn instance_id(&self) -> &str {
        self.shared.ticker.instance_id()
    }

    /// Whether this instance held the tick lease at its last background tick, so
    /// that it is the one pruning and raising the record. Always false without a
    /// lease (in-memory presence, or the lease turned off): every instance ticks.
    pub fn holds_tick_lease(&self) -> bool {
        self.shared.ticker.holds_lease()
    }
}
