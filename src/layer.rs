//! The tower layer that reports every request, without ever making it wait.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::Request;
use tokio::sync::{Semaphore, mpsc};
use tower::{Layer, Service};

use crate::bots::BotFilter;
use crate::counters::{Counters, LogLimiter, incr};
use crate::filters::Skip;
use crate::identity::{
    ClientIpSource, IdentifyUser, Identity, SessionKey, User, UserFuture, client_ip, group_ip,
};
use crate::places::{PlaceHook, clean as clean_place};
use crate::queue::Msg;
use crate::who::{BotName, Place, Who};

/// What every clone of the layer and its services shares.
pub(crate) struct Reporting {
    pub(crate) tx: mpsc::Sender<Msg>,
    pub(crate) identify: Arc<dyn IdentifyUser>,
    pub(crate) ip_source: ClientIpSource,
    /// IPv6 visitors are counted by this many leading bits.
    pub(crate) ipv6_prefix: u8,
    pub(crate) bots: BotFilter,
    /// Names the place of a request, when the host names places.
    pub(crate) places: Option<PlaceHook>,
    pub(crate) skip: Skip,
    pub(crate) counters: Arc<Counters>,
    pub(crate) drop_log: LogLimiter,
    /// Rate limit of the warnings about timed-out or over-cap identifications.
    pub(crate) identify_log: LogLimiter,
    /// Members handed on lately; shared with the reporter.
    pub(crate) dedupe: Arc<crate::dedupe::Dedupe>,
    /// Users named lately per session key.
    pub(crate) known: crate::known::KnownUsers,
    /// How long a deferred identification may run once the response is ready.
    pub(crate) identify_timeout: std::time::Duration,
    /// One permit per deferred identification running on a spawned task.
    pub(crate) identifying: Arc<Semaphore>,
}

impl Reporting {
    /// Hands a report to the queue unless the same member went less than the
    /// resolution ago; never waits. A full queue drops and counts.
    fn report(&self, who: Who, place: Option<Place>) {
        use crate::dedupe::Verdict;
        let ticket = match self.dedupe.check(&who, place.as_deref()) {
            Verdict::Recent => return,
            Verdict::Due(ticket) => ticket,
        };
        // Marked before the send: the reporter may take the report, and forget
        // it if it has to drop it, before this thread goes on.
        self.dedupe.mark(ticket);
        match self.tx.try_send(Msg::Seen(who, place)) {
            Ok(()) => incr(&self.counters.reports_queued),
            Err(e) => {
                self.dedupe.unmark(ticket);
                incr(&self.counters.reports_dropped);
                if self.drop_log.allow(10) {
                    let reason = match e {
                        mpsc::error::TrySendError::Full(_) => "queue full",
                        mpsc::error::TrySendError::Closed(_) => "shut down",
                    };
                    tracing::warn!(
                        reason,
                        dropped_total = self
                            .counters
                            .reports_dropped
                            .load(std::sync::atomic::Ordering::Relaxed),
                        "whos-online: dropping presence reports"
                    );
                }
            }
        }
    }

    /// Settles a deferred hook's answer, and remembers it under the request's
    /// session key (a valid user; "nobody" forgets an older answer).
    fn answered(&self, user: Option<User>, anon: Anonymous, key: Option<SessionKey>) {
        if let Some(key) = key {
            let user = user.as_ref().filter(|u| u.is_valid() && key.holds());
            self.known.put(key.key, user);
        }
        self.settle(user, anon);
    }

    /// A request is a user, or else a bot, or else a visitor: never two of them.
    fn settle(&self, user: Option<User>, anon: Anonymous) {
        match user {
            Some(u) => self.settle_user(u, anon.origin),
            None => self.settle_anonymous(anon),
        }
    }

    fn settle_user(&self, user: User, origin: Origin) {
        if user.is_valid() {
            let (name, hidden) = user.into_parts();
            let Origin { ip, place } = origin;
            self.report(Who::User { name, hidden, ip }, place);
        } else {
            incr(&self.counters.reports_invalid);
        }
    }

    fn settle_anonymous(&self, anon: Anonymous) {
        if let Some((who, place)) = self.anonymous_member(anon) {
            self.report(who, place);
        }
    }

    /// The bot or visitor an anonymous request is, and its place; without an
    /// address it is nobody, and counted as unidentified.
    fn anonymous_member(&self, anon: Anonymous) -> Option<(Who, Option<Place>)> {
        let who = anon.who();
        if who.is_none() {
            incr(&self.counters.reports_unidentified);
        }
        who
    }

    /// Where the request comes from (the client's address, grouped as a
    /// visitor's is) and where it is (the place hook's answer).
    fn origin(&self, parts: &http::request::Parts) -> Origin {
        Origin {
            ip: client_ip(self.ip_source, parts).map(|ip| group_ip(ip, self.ipv6_prefix)),
            place: self
                .places
                .as_ref()
                .and_then(|hook| clean_place(hook(parts)?)),
        }
    }

    /// What the request is if no user claims it.
    fn anonymous(&self, parts: &http::request::Parts) -> Anonymous {
        Anonymous {
            origin: self.origin(parts),
            bot: self.bots.bot_of(&parts.headers),
        }
    }
}

/// Where a request comes from and where it is, worked out before it moves on.
#[derive(Debug, Clone, Default)]
struct Origin {
    ip: Option<IpAddr>,
    place: Option<Place>,
}

/// What a request is if no user claims it, worked out before it moves on.
#[derive(Debug, Clone)]
struct Anonymous {
    origin: Origin,
    bot: Option<BotName>,
}

impl Anonymous {
    /// A bot or a visitor, and its place; `None` without an address.
    fn who(self) -> Option<(Who, Option<Place>)> {
        let Origin { ip, place } = self.origin;
        let ip = ip?;
        let who = match self.bot {
            Some(name) => Who::Bot(ip, name),
            None => Who::Visitor(ip),
        };
        Some((who, place))
    }
}

/// Reports each request to who's online as a user or a visitor.
///
/// Made by [`WhosOnline::layer`](crate::WhosOnline::layer); add it with
/// `Router::layer`, or wrap the whole router with it (cheaper: see there).
/// Cheap to clone.
#[derive(Clone)]
pub struct WhosOnlineLayer {
    reporting: Arc<Reporting>,
}

impl std::fmt::Debug for WhosOnlineLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhosOnlineLayer")
            .field("ip_source", &self.reporting.ip_source)
            .finish_non_exhaustive()
    }
}

impl WhosOnlineLayer {
    pub(crate) fn new(reporting: Arc<Reporting>) -> Self {
        Self { reporting }
    }
}

impl<S> Layer<S> for WhosOnlineLayer {
    type Service = WhosOnlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WhosOnlineService {
            inner,
            reporting: Arc::clone(&self.reporting),
        }
    }
}

/// The service made by [`WhosOnlineLayer`].
#[derive(Clone)]
pub struct WhosOnlineService<S> {
    inner: S,
    reporting: Arc<Reporting>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for WhosOnlineService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhosOnlineService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> WhosOnlineService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for WhosOnlineService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    /// A user named at once is reported here, before the handler runs. For a
    /// visitor or a bot, the de-dup line is prefetched here and checked once the
    /// response is ready (or the response future is dropped). A deferred answer
    /// is kept, with what the request is if the answer is "nobody", and settled
    /// then too.
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let r = &self.reporting;
        let pending = if !r.skip.is_empty() && r.skip.skips(&parts) {
            None
        } else {
            let key = if r.known.is_on() {
                r.identify.session_key(&parts)
            } else {
                None
            };
            // A session seen lately is that user again: the hook is not run.
            // With a recheck, the report waits for the response, to see whether
            // the handler ended the session.
            let known = key.as_ref().and_then(|k| r.known.get(k.key));
            let (identity, key) = match (known, key) {
                (Some(user), Some(key)) if key.recheck.is_some() => {
                    let origin = r.origin(&parts);
                    return ResponseFuture {
                        inner: self.inner.call(Request::from_parts(parts, body)),
                        pending: Some(Pending::Remembered {
                            origin,
                            user,
                            key,
                            reporting: Arc::clone(r),
                        }),
                    };
                }
                (Some(user), _) => (Identity::User(user), None),
                (None, key) => (r.identify.identify(&parts), key),
            };
            match identity {
                Identity::User(user) => {
                    r.settle_user(user, r.origin(&parts));
                    None
                }
                // The check waits until the response is ready: its cache line,
                // likely cold, loads meanwhile.
                Identity::Anonymous => {
                    r.anonymous_member(r.anonymous(&parts)).map(|(who, place)| {
                        r.dedupe.warm(&who);
                        Pending::Anonymous {
                            who,
                            place,
                            reporting: Arc::clone(r),
                        }
                    })
                }
                Identity::Deferred(user) => Some(Pending::Deferred {
                    anon: r.anonymous(&parts),
                    user,
                    key,
                    reporting: Arc::clone(r),
                }),
            }
        };
        ResponseFuture {
            inner: self.inner.call(Request::from_parts(parts, body)),
            pending,
        }
    }
}

/// What is left to report once the response is ready.
enum Pending {
    /// A visitor or a bot, whose de-dup line is on its way into the cache.
    Anonymous {
        who: Who,
        place: Option<Place>,
        reporting: Arc<Reporting>,
    },
    /// A user remembered for the request's session key, reported once the
    /// response shows whether the key still holds.
    Remembered {
        user: User,
        key: SessionKey,
        origin: Origin,
        reporting: Arc<Reporting>,
    },
    /// A hook's deferred answer, and what the request is if it says "nobody".
    Deferred {
        anon: Anonymous,
        user: UserFuture,
        /// The session key the answer is remembered under.
        key: Option<SessionKey>,
        reporting: Arc<Reporting>,
    },
}

impl Pending {
    /// Reports once the response is ready. A user hook that cannot answer at once
    /// is finished on a spawned task, so the response never waits for it; that
    /// task holds one of [`max_identifying`](crate::Builder::max_identifying)
    /// permits and lives at most
    /// [`identify_timeout`](crate::Builder::identify_timeout).
    fn finish(self) {
        let (anon, mut user, key, reporting) = match self {
            Pending::Anonymous {
                who,
                place,
                reporting,
            } => return reporting.report(who, place),
            Pending::Remembered {
                user,
                key,
                origin,
                reporting,
            } => {
                if !key.holds() {
                    reporting.known.put(key.key, None);
                }
                return reporting.settle_user(user, origin);
            }
            Pending::Deferred {
                anon,
                user,
                key,
                reporting,
            } => (anon, user, key, reporting),
        };
        match user.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(user) => reporting.answered(user, anon, key),
            Poll::Pending => reporting.identify_later(user, anon, key),
        }
    }
}

impl Reporting {
    /// Finishes a deferred identification on a spawned task, under the cap and
    /// the timeout. Never waits: with every permit taken, or past the timeout,
    /// the request is dropped and counted (`identify_over_cap`,
    /// `identify_timeouts`), not guessed to be a visitor, since it may be a
    /// logged-in user who would then count twice.
    fn identify_later(self: Arc<Self>, user: UserFuture, anon: Anonymous, key: Option<SessionKey>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            incr(&self.counters.reports_dropped);
            return;
        };
        let Ok(permit) = Arc::clone(&self.identifying).try_acquire_owned() else {
            incr(&self.counters.identify_over_cap);
            if self.identify_log.allow(10) {
                tracing::warn!(
                    over_cap_total = self
                        .counters
                        .identify_over_cap
                        .load(std::sync::atomic::Ordering::Relaxed),
                    "whos-online: too many user identifications in flight; dropping reports"
                );
            }
            return;
        };
        rt.spawn(async move {
            match tokio::time::timeout(self.identify_timeout, user).await {
                Ok(user) => self.answered(user, anon, key),
                Err(_) => {
                    incr(&self.counters.identify_timeouts);
                    if self.identify_log.allow(10) {
                        tracing::warn!(
                            timeout = ?self.identify_timeout,
                            timeouts_total = self
                                .counters
                                .identify_timeouts
                                .load(std::sync::atomic::Ordering::Relaxed),
                            "whos-online: user identification timed out; dropping reports"
                        );
                    }
                }
            }
            drop(permit);
        });
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`WhosOnlineService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }

    /// A request whose response never came (the client went away, a timeout
    /// cancelled the handler) was still a visit: it is reported as the future
    /// is dropped.
    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                pending.finish();
            }
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some(pending) = this.pending.take() {
            pending.finish();
        }
        Poll::Ready(out)
    }
}
