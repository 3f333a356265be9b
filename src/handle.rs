//! The handle: one place that owns the stores, the queue and the background tasks.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Builder;
use crate::counters::{CounterSnapshot, Counters};
use crate::layer::{Reporting, WhosOnlineLayer};
use crate::presence::{Online, PresenceStore};
use crate::queue::Msg;
use crate::refresher::Refresher;
use crate::ticker::{TickReport, Ticker};
use crate::view::View;
use crate::who::Who;
use crate::{Error, Record, Result};

pub(crate) struct Shared {
    /// For reads the view does not hold (`last_seen`).
    pub(crate) presence: Arc<dyn PresenceStore>,
    pub(crate) window: Duration,
    pub(crate) counters: Arc<Counters>,
    pub(crate) reporting: Arc<Reporting>,
    /// Prunes, counts and raises the record; shared with its background task.
    pub(crate) ticker: Arc<Ticker>,
    /// Keeps the view current; shared with its background task.
    pub(crate) refresher: Arc<Refresher>,
    /// The view's refresh interval.
    pub(crate) refresh: Duration,
    /// Whether the fragment serves `GET /openapi.json` (feature `openapi`).
    #[cfg_attr(not(feature = "openapi"), allow(dead_code))]
    pub(crate) serve_openapi: bool,
    /// The ceiling of `limit` in `GET /online`.
    pub(crate) max_limit: u32,
    /// Event streams open now, and the cap.
    pub(crate) open_streams: AtomicUsize,
    pub(crate) max_streams: usize,
    /// Cancelled to end every event stream (shutdown).
    pub(crate) streams_end: CancellationToken,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: Mutex<Tasks>,
}

/// The background tasks, until shutdown takes them.
#[derive(Default)]
pub(crate) struct Tasks {
    pub(crate) reporter: Option<JoinHandle<Result<()>>>,
    pub(crate) ticker: Option<JoinHandle<()>>,
    pub(crate) refresher: Option<JoinHandle<()>>,
}

impl Shared {
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
/// let view = whos.view();
/// assert_eq!(view.user_count(), 0);
/// assert_eq!(view.record().max_users, 0);
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

    /// The current view: counts, listed names, the record and how fresh they
    /// are, as one shared snapshot. Synchronous, no I/O, never fails or blocks:
    /// made for rendering a footer on every page.
    ///
    /// The view is refreshed every [`refresh`](crate::Builder::refresh)
    /// interval (1 s by default) by one background read, shared by every
    /// reader. When the stores fail it keeps the last good values;
    /// [`View::as_of`] says how old they are.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
    /// # let whos = axum_whos_online::WhosOnline::builder().build()?;
    /// let view = whos.view();
    /// println!("{} users and {} guests online", view.user_count(), view.visitor_count());
    /// # whos.shutdown().await?; Ok(()) }
    /// ```
    pub fn view(&self) -> Arc<View> {
        self.shared.refresher.view()
    }

    /// Refreshes the view now and returns it: for tests (after a
    /// [`flush`](Self::flush), or with a manual clock and no background
    /// refresh) and admin tools. Refreshes never overlap. An error, when the
    /// presence store could not be read, leaves the last good view in place.
    /// [`tick_now`](Self::tick_now) and [`reset_record`](Self::reset_record)
    /// refresh the view too.
    pub async fn refresh_now(&self) -> Result<Arc<View>> {
        self.shared.refresher.refresh().await
    }

    /// Who is online, from the [view](Self::view): at most `limit` names (the
    /// most recently seen, sorted by name; at most
    /// [`view_names`](crate::Builder::view_names)) and complete counts.
    ///
    /// As old as the view: at most one [`refresh`](crate::Builder::refresh)
    /// interval while the presence store answers (call
    /// [`refresh_now`](Self::refresh_now) first to read the store now). Never
    /// fails; the `Result` is kept for compatibility.
    pub async fn online(&self, limit: usize) -> Result<Online> {
        Ok(self.view().online(limit))
    }

    /// Who is where, for an admin page, from the [view](Self::view): see
    /// [`View::who_is_where`]. Served over HTTP by
    /// [`admin_router`](Self::admin_router), never by the public fragment.
    pub fn who_is_where(&self, limit: usize) -> crate::WhoIsWhere {
        self.view().who_is_where(limit)
    }

    /// Who is at `place` ("users browsing this forum"), from the
    /// [view](Self::view): see [`View::online_in`]. As old as the view; no I/O.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
    /// # let whos = axum_whos_online::WhosOnline::builder()
    /// #     .places(axum_whos_online::place_by_matched_path).build()?;
    /// let here = whos.online_in("/forum/{id}", 20);
    /// let line = format!(
    ///     "Browsing this forum: {} and {} guests",
    ///     if here.users.is_empty() { "no users".to_owned() } else { here.users.join(", ") },
    ///     here.visitor_count,
    /// );
    /// # let _ = line; whos.shutdown().await?; Ok(()) }
    /// ```
    pub fn online_in(&self, place: &str, limit: usize) -> Online {
        self.view().online_in(place, limit)
    }

    /// Names of the users online, from the [view](Self::view) (at most
    /// `limit`, the most recently seen, sorted by name; hidden users never
    /// appear). As old as the view.
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

    /// How many users are online, hidden ones included, from the
    /// [view](Self::view): as old as the view.
    pub async fn user_count(&self) -> Result<u64> {
        Ok(self.view().user_count())
    }

    /// How many anonymous visitors are online, from the [view](Self::view): as
    /// old as the view.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
    /// # let whos = axum_whos_online::WhosOnline::builder().build()?;
    /// let guests = whos.visitor_count().await?;
    /// println!("{guests} guests");
    /// # whos.shutdown().await?; Ok(()) }
    /// ```
    pub async fn visitor_count(&self) -> Result<u64> {
        Ok(self.view().visitor_count())
    }

    /// How many bots are online, from the [view](Self::view): as old as the view.
    pub async fn bot_count(&self) -> Result<u64> {
        Ok(self.view().bot_count())
    }

    /// The all-time record, from the [view](Self::view), which reads it from
    /// the Redis cache, else from the record store, at each refresh: as old as
    /// the view, and never below the counts beside it. A raise or a reset
    /// through [`tick_now`](Self::tick_now) or [`reset_record`](Self::reset_record)
    /// shows at once; any other within one refresh.
    pub async fn record(&self) -> Result<Record> {
        Ok(self.view().record())
    }

    /// The daily history of the last `days` UTC days (1 to
    /// [`MAX_HISTORY_READ`](crate::MAX_HISTORY_READ), 366), oldest first and
    /// ending today, one entry per day with zeros for days without data: the
    /// peaks of users, visitors and bots and when each was first reached, and
    /// the distinct users and visitors of each day. No I/O: served from the
    /// copy each tick reads (every [`tick_interval`](crate::Builder::tick_interval)),
    /// except today's peaks, which also take in every refresh of the
    /// [view](Self::view) since (each with the time this instance first saw
    /// it; the next tick writes them), so they are never below the counts
    /// beside them. The distinct counts are as of the last tick.
    ///
    /// Errors: [`Error::InvalidArgument`](crate::Error::InvalidArgument) for
    /// `days` out of range; [`Error::NoHistory`](crate::Error::NoHistory) until
    /// the first tick has read the history (or when none is kept). When the
    /// store stops answering, the last good copy is served and
    /// [`History::as_of`](crate::History::as_of) says how old it is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
    /// let whos = axum_whos_online::WhosOnline::builder().build()?;
    /// whos.tick_now().await?;
    /// let week = whos.history(7)?;
    /// assert_eq!(week.days.len(), 7);
    /// let today = week.days.last().unwrap();
    /// println!("most online today: {} users, {} guests", today.max_users, today.max_visitors);
    /// # whos.shutdown().await?; Ok(()) }
    /// ```
    pub fn history(&self, days: u32) -> Result<crate::History> {
        if !(1..=crate::MAX_HISTORY_READ).contains(&days) {
            return Err(crate::Error::InvalidArgument(format!(
                "days must be from 1 to {}",
                crate::MAX_HISTORY_READ
            )));
        }
        let ticker = &self.shared.ticker;
        let kept = ticker.kept_history().ok_or(crate::Error::NoHistory)?;
        let today = ticker.clock.now().date_naive();
        let mut history = crate::History::of(&kept.days, today, days, Some(kept.as_of));
        // Today's peaks as this instance saw them since the last tick (each
        // refresh of the view notes its counts): never below the counts shown
        // beside them, each with the time it was first seen.
        if let (Some(live), Some(last)) = (ticker.live_day(), history.days.last_mut())
            && live.day == last.day
        {
            last.raise(&live);
        }
        Ok(history)
    }

    /// The user `name` logged out: they leave the listed names at once instead
    /// of staying listed for the whole window. For a logout handler, after the
    /// session is ended (a later request of theirs as a user lists them again).
    ///
    /// The removal is queued behind every report of them made before, written
    /// at once (one round trip, as [`flush`](Self::flush)), and this instance's
    /// [view](Self::view) is refreshed; other instances' views drop them at
    /// their next refresh. Errors as `flush`: when the store fails, the removal
    /// stays queued and is written with the next write.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
    /// # let whos = axum_whos_online::WhosOnline::builder().build()?;
    /// // In the logout handler, after `session.flush()`:
    /// whos.user_left("alice").await?;
    /// # whos.shutdown().await?; Ok(()) }
    /// ```
    pub async fn user_left(&self, name: impl Into<String>) -> Result<()> {
        let name = name.into();
        // Their next report is handed on, not taken for one already written.
        self.shared.reporting.dedupe.forget(&Who::User {
            name: name.clone(),
            hidden: false,
            ip: None,
        });
        self.shared
            .tx()
            .send(Msg::Left(name))
            .await
            .map_err(|_| Error::Shutdown)?;
        self.flush().await?;
        self.refresh_quietly().await;
        Ok(())
    }

    /// When the user `name` was last seen, for a profile page ("last seen 5
    /// minutes ago"): from the [view](Self::view) when it lists them (no I/O),
    /// else one read of the presence store. `None` for a hidden user, one not
    /// seen within the window (or already pruned), and with a presence store
    /// of your own that does not implement
    /// [`PresenceStore::last_seen`](crate::PresenceStore::last_seen).
    pub async fn last_seen(&self, name: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let view = self.view();
        let secs = match view.recent().iter().find(|(n, _)| n == name) {
            Some(&(_, at)) => Some(at),
            None => self.shared.presence.last_seen(name).await?,
        };
        Ok(secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0)))
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
        let stored = self.shared.ticker.reset_record(to).await?;
        self.refresh_quietly().await;
        Ok(stored)
    }

    /// Refreshes the view after something of this instance changed what it
    /// shows; a failure is counted and logged by the refresher, and the
    /// background refresh tries again.
    async fn refresh_quietly(&self) {
        let _ = self.shared.refresher.refresh().await;
    }

    /// Runs one tick now (prune, count, raise the record), whatever the
    /// interval, then refreshes the view. For tests and admin tools; ticks of
    /// one instance never overlap.
    pub async fn tick_now(&self) -> Result<TickReport> {
        let report = self.shared.ticker.tick().await;
        self.refresh_quietly().await;
        report
    }

    /// Writes every report queued so far to the presence store, and waits for it.
    ///
    /// Returns the write's error ([`Error::Unwritten`]) when it fails; its
    /// members stay pending for the next write. While writes are failing, a
    /// flush does not add an attempt: it waits for the next scheduled one (at
    /// most one [`flush_interval`](crate::Builder::flush_interval)), so callers
    /// cannot hammer a store that is down. Not meant for the request path.
    ///
    /// The [view](Self::view) shows the writes at its next refresh
    /// ([`refresh_now`](Self::refresh_now) to have it at once).
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
        self.end_streams();
        self.shared.cancel.cancel();
        let tasks = std::mem::take(&mut *crate::sync::lock(&self.shared.tasks));
        if let Some(refresher) = tasks.refresher
            && let Err(e) = refresher.await
        {
            tracing::error!(error = %e, "whos-online: view refresh task failed");
        }
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

    /// Ends every open event stream (`GET /online/events`) cleanly, and every
    /// one opened later at once: for a graceful shutdown, which waits for open
    /// connections, and a stream never ends by itself. A stream whose client
    /// stopped reading ends only when it is read again: bound the wait with
    /// [`graceful`](Self::graceful).
    /// [`shutdown_signal`](Self::shutdown_signal) and [`shutdown`](Self::shutdown)
    /// call it.
    pub fn end_streams(&self) {
        self.shared.streams_end.cancel();
    }

    /// Completes on Ctrl-C or, on Unix, SIGTERM (as
    /// [`crate::shutdown_signal`]), after ending this instance's event
    /// streams: hand it to `axum::serve(..).with_graceful_shutdown`, which
    /// otherwise waits for the streams forever.
    ///
    /// ```no_run
    /// # async fn run(whos: axum_whos_online::WhosOnline, app: axum::Router) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app)
    ///     .with_graceful_shutdown(whos.shutdown_signal())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn shutdown_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let whos = self.clone();
        async move {
            crate::signal::shutdown_signal().await;
            whos.end_streams();
        }
    }

    /// Runs `server` to its end, but for at most `grace` once the event
    /// streams were ended (by [`shutdown_signal`](Self::shutdown_signal) or
    /// [`end_streams`](Self::end_streams)), and returns its result, or `Ok`
    /// when the grace ran out (logged).
    ///
    /// A graceful shutdown waits for every open connection. A client that
    /// stopped reading its event stream is never polled again, so it cannot
    /// see its stream end, and would hold the shutdown open forever; then
    /// [`shutdown`](Self::shutdown) never ran and queued reports were lost
    /// when the process was killed.
    ///
    /// ```no_run
    /// # use std::{net::SocketAddr, time::Duration};
    /// # async fn run(whos: axum_whos_online::WhosOnline, app: axum::Router) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
    ///     .with_graceful_shutdown(whos.shutdown_signal());
    /// whos.graceful(server, Duration::from_secs(10)).await?;
    /// whos.shutdown().await.ok(); // writes every queued report
    /// # Ok(()) }
    /// ```
    pub async fn graceful<F, E>(&self, server: F, grace: Duration) -> std::result::Result<(), E>
    where
        F: std::future::IntoFuture<Output = std::result::Result<(), E>>,
    {
        let server = server.into_future();
        tokio::pin!(server);
        tokio::select! {
            served = &mut server => return served,
            () = self.shared.streams_end.cancelled() => {}
        }
        match tokio::time::timeout(grace, server).await {
            Ok(served) => served,
            Err(_) => {
                tracing::warn!(
                    grace_secs = grace.as_secs_f64(),
                    "whos-online: connections still open after the shutdown grace (a client not \
                     reading its event stream?); stopping anyway"
                );
                Ok(())
            }
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
