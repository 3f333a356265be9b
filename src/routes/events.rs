//! `GET /online/events`: the view's changes as server-sent events.
//!
//! Every subscriber of an instance watches the one view (a `tokio::sync::watch`
//! channel the refresher sends to when the content changes), so a thousand
//! open streams cause no more store commands than none. A subscriber that reads
//! slowly sees the latest view only (the ones it missed are counted), and never
//! delays the refresh or the others. Each event is encoded once for all the
//! subscribers that need the same one.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::json::{OnlineResponse, StatsResponse, to_json};
use super::{ApiError, Fragment, parse_limit};
use crate::View;
use crate::counters::{Counters, add, incr};
use crate::handle::Shared;
use crate::presence::Counts;
use crate::record::Record;
use crate::sync::lock;

/// How often an idle stream sends a comment, so that proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// What a client refused for too many streams is asked to wait, in seconds.
const RETRY_AFTER_SECS: &str = "10";

/// An `online` event after the first: the `/online` body, and the listed names
/// that arrived and left since the previous `online` event of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OnlineEvent {
    /// The snapshot, as `GET /online` serves it.
    #[serde(flatten)]
    pub online: OnlineResponse,
    /// Names listed now that were not in the previous event, sorted.
    pub joins: Vec<String>,
    /// Names in the previous event that are not listed now, sorted.
    pub leaves: Vec<String>,
}

/// What a stream last sent.
struct Sent {
    /// The refresh of the view it came from.
    refresh: u64,
    /// Shared with every stream of the same `limit` that sent the same view.
    names: Arc<[String]>,
    counts: Counts,
    record: Record,
}

/// Which encoded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// The first `online` event: the `/online` body of the view of `refresh`.
    First { refresh: u64, limit: usize },
    /// An `online` event from the view of refresh `from` to that of `to`.
    Change { from: u64, to: u64, limit: usize },
    /// A `stats` event of the view of `refresh`.
    Stats { refresh: u64 },
}

/// Events encoded lately, and the names each `limit` lists in a view, shared
/// by every subscriber of the fragment.
#[derive(Default)]
pub(super) struct Encoded {
    events: Mutex<Vec<(Key, Arc<str>)>>,
    /// The names a stream of each `limit` lists, by view.
    names: Mutex<Vec<Listed>>,
}

/// `(refresh, limit)`, and the names a stream of that `limit` lists in the
/// view of that refresh.
type Listed = ((u64, usize), Arc<[String]>);

/// Encodings kept: a few limits and lags in use at once. A client picks its
/// `limit`; streams spread over more limits than this are encoded per stream.
const KEPT: usize = 64;

impl Encoded {
    /// The names a stream of `limit` lists from `view`, computed once per view
    /// and limit.
    fn names(&self, view: &View, limit: usize) -> Arc<[String]> {
        let key = (view.refreshes, limit);
        if let Some((_, names)) = lock(&self.names).iter().find(|(k, _)| *k == key) {
            return Arc::clone(names);
        }
        let names: Arc<[String]> = OnlineResponse::from_view(view, limit).users.into();
        let mut all = lock(&self.names);
        all.retain(|((refresh, _), _)| *refresh >= view.refreshes.saturating_sub(2));
        if all.len() >= KEPT {
            all.remove(0);
        }
        all.push((key, Arc::clone(&names)));
        names
    }

    fn get(&self, key: Key, encode: impl FnOnce() -> Vec<u8>) -> Arc<str> {
        if let Some((_, json)) = lock(&self.events).iter().find(|(k, _)| *k == key) {
            return Arc::clone(json);
        }
        let json: Arc<str> = String::from_utf8(encode()).unwrap_or_default().into();
        let mut events = lock(&self.events);
        if events.len() >= KEPT {
            events.remove(0);
        }
        events.push((key, Arc::clone(&json)));
        json
    }
}

/// One open stream's place under the cap; freed when the stream is dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Slot {
    /// A place, unless `max` streams are open.
    fn take(shared: &Arc<Shared>) -> Option<Self> {
        let max = shared.max_streams;
        shared
            .open_streams
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(shared)))
    }
}

/// One subscriber's stream.
struct Subscription {
    rx: watch::Receiver<Arc<View>>,
    end: CancellationToken,
    limit: usize,
    /// The version of the last view this stream looked at.
    seen_version: u64,
    sent: Sent,
    queue: VecDeque<Event>,
    encoded: Arc<Encoded>,
    counters: Arc<Counters>,
    _slot: Slot,
}

impl Subscription {
    /// The events for a view the stream has not looked at.
    fn look_at(&mut self, view: &View) {
        if view.version > self.seen_version + 1 {
            add(
                &self.counters.stream_views_skipped,
                view.version - self.seen_version - 1,
            );
        }
        self.seen_version = self.seen_version.max(view.version);
        // This stream's names: its `limit` most recent. They can change while
        // the whole list does not (another order), and the other way round.
        let names = self.encoded.names(view, self.limit);
        let counts = view.counts();
        let same_names = Arc::ptr_eq(&names, &self.sent.names) || names == self.sent.names;
        if !same_names || counts != self.sent.counts {
            let key = Key::Change {
                from: self.sent.refresh,
                to: view.refreshes,
                limit: self.limit,
            };
            let previous = Arc::clone(&self.sent.names);
            let limit = self.limit;
            let json = self.encoded.get(key, || {
                let online = OnlineResponse::from_view(view, limit);
                let (joins, leaves) = difference(&previous, &online.users);
                to_json(&OnlineEvent {
                    online,
                    joins,
                    leaves,
                })
            });
            self.queue.push_back(online_event(view, &json));
            self.sent.names = names;
            self.sent.counts = counts;
            self.sent.refresh = view.refreshes;
        }
        if view.record() != self.sent.record {
            self.queue.push_back(self.stats_event(view));
            self.sent.record = view.record();
        }
    }

    fn stats_event(&self, view: &View) -> Event {
        let json = self.encoded.get(
            Key::Stats {
                refresh: view.refreshes,
            },
            || to_json(&StatsResponse::from_view(view)),
        );
        Event::default()
            .event("stats")
            .id((view.version * 2 + 1).to_string())
            .data(&*json)
    }

    /// The next event, or `None` when the stream ends (shutdown).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            tokio::select! {
                biased;
                () = self.end.cancelled() => return None,
                changed = self.rx.changed() => {
                    changed.ok()?;
                    let view = Arc::clone(&self.rx.borrow_and_update());
                    self.look_at(&view);
                }
            }
        }
    }
}

fn online_event(view: &View, json: &str) -> Event {
    Event::default()
        .event("online")
        .id((view.version * 2).to_string())
        .data(json)
}

/// The names of `new` not in `old`, and of `old` not in `new`; both sorted.
fn difference(old: &[String], new: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut joins, mut leaves) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                leaves.push(a.clone());
                i += 1;
            }
            (Some(a), None) => {
                leaves.push(a.clone());
                i += 1;
            }
            (_, Some(b)) => {
                joins.push(b.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    (joins, leaves)
}

/// The stream of changes of the view.
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/online/events",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 10000,
            description = "As for `/online`: how many names each `online` event lists.")),
    responses(
        (status = 200, content_type = "text/event-stream",
         description = "Server-sent events. On connect, `event: online` with the `/online` body and \
                        `event: stats` with the `/stats` body; then `event: online` (an `OnlineEvent`: \
                        the `/online` body plus `joins` and `leaves`) each time the counts or the listed \
                        names change, at most once per refresh, and `event: stats` each time the record \
                        changes. Ids increase strictly. A comment every 15 s keeps the stream open.",
         body = OnlineEvent),
        (status = 400, description = "Bad query string", body = super::ErrorBody),
        (status = 503, description = "Too many open streams on this instance; see Retry-After", body = super::ErrorBody),
    ),
))]
pub(super) async fn online_events(
    State(fragment): State<Fragment>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let whos = &fragment.whos;
    let limit = parse_limit(&uri, whos.shared.max_limit)?;
    let Some(slot) = Slot::take(&whos.shared) else {
        incr(&whos.shared.counters.streams_refused);
        let mut res = ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open event streams; retry later".into(),
        )
        .into_response();
        res.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
        return Ok(res);
    };
    incr(&whos.shared.counters.streams_opened);
    let mut rx = whos.shared.refresher.subscribe();
    rx.borrow_and_update();
    let view = whos.view();
    let online = OnlineResponse::from_view(&view, limit);
    let encoded = Arc::clone(&fragment.events);
    let names = encoded.names(&view, limit);
    let json = encoded.get(
        Key::First {
            refresh: view.refreshes,
            limit,
        },
        || to_json(&online),
    );
    let mut sub = Subscription {
        rx,
        end: whos.shared.streams_end.clone(),
        limit,
        seen_version: view.version,
        sent: Sent {
            refresh: view.refreshes,
            names,
            counts: view.counts(),
            record: view.record(),
        },
        queue: VecDeque::new(),
        encoded,
        counters: Arc::clone(&whos.shared.counters),
        _slot: slot,
    };
    sub.queue.push_back(online_event(&view, &json));
    let stats = sub.stats_event(&view);
    sub.queue.push_back(stats);
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        let event = sub.next().await?;
        Some((Ok::<_, Infallible>(event), sub))
    });
    let mut res = sse(stream).into_response();
    // Tell nginx not to buffer the stream.
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

fn sse<S>(stream: S) -> impl IntoResponse
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn joins_and_leaves_are_the_two_differences() {
        let (joins, leaves) = difference(&names(&["a", "c", "d"]), &names(&["b", "c", "e"]));
        assert_eq!(joins, names(&["b", "e"]));
        assert_eq!(leaves, names(&["a", "d"]));
        assert_eq!(difference(&[], &names(&["a"])), (names(&["a"]), vec![]));
        assert_eq!(difference(&names(&["a"]), &[]), (vec![], names(&["a"])));
        assert_eq!(difference(&names(&["a"]), &names(&["a"])), (vec![], vec![]));
    }
}
