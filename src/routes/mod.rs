//! The router fragment: `GET /online` (also per place), `GET /online/places`,
//! `GET /stats`, `GET /stats/history` and `GET /online/events`,
//! all served from the instance's [`View`](crate::View): no request reads Redis
//! or Postgres.
//!
//! * `json.rs`: `/online`, `/stats` and `/stats/history`, with strong `ETag`s
//!   and `304 Not Modified` (the view's bodies encoded once per refresh).
//! * `events.rs`: the server-sent event stream of changes.
//! * `admin.rs`: `GET /online/detail`, who is where, in a fragment of its own
//!   for the host to mount behind its authorisation.
//! * `openapi.rs`: the OpenAPI document (feature `openapi`).

mod admin;
mod events;
mod json;
#[cfg(feature = "openapi")]
mod openapi;

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde::{Deserialize, Serialize};

pub use self::admin::{DetailEntry, DetailResponse};
pub use self::events::OnlineEvent;
pub use self::json::{OnlineResponse, PlaceEntry, PlacesResponse, StatsResponse};
#[cfg(feature = "openapi")]
pub use self::openapi::openapi;
use crate::WhosOnline;
use crate::config::DEFAULT_LIMIT;
use crate::places::MAX_PLACE_LEN;

/// The body of every error answer of the fragment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
}

/// A JSON error: `{"error": "..."}` with a status.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(message: String) -> Self {
        Self(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.0, Json(ErrorBody { error: self.1 })).into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// The query of `/online/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<String>,
}

/// The query of `/online`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnlineQuery {
    limit: Option<String>,
    place: Option<String>,
}

/// Longest query string the fragment reads, in bytes: room for a place of
/// [`MAX_PLACE_LEN`] bytes, percent-encoded, and a limit.
const MAX_QUERY: usize = 512;

/// Parses a query string that must hold only what `T` names.
fn parse_query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    if uri.query().map_or(0, str::len) > MAX_QUERY {
        return Err(ApiError::bad_request(format!(
            "bad query string: longer than {MAX_QUERY} bytes"
        )));
    }
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
}

/// The `limit` of `/online/events`: 1 to `ceiling`, default
/// [`DEFAULT_LIMIT`] (or the ceiling, if lower).
fn parse_limit(uri: &axum::http::Uri, ceiling: u32) -> Result<usize, ApiError> {
    let q: LimitQuery = parse_query(uri)?;
    limit_in(q.limit, 1, ceiling, DEFAULT_LIMIT.min(ceiling))
}

/// A `limit` from `low` to `high`, `default` when absent.
fn limit_in(raw: Option<String>, low: u32, high: u32, default: u32) -> Result<usize, ApiError> {
    number_in("limit", raw, low, high, default).map(|n| n as usize)
}

/// The query parameter `name` as a whole number from `low` to `high`,
/// `default` when absent.
fn number_in(
    name: &str,
    raw: Option<String>,
    low: u32,
    high: u32,
    default: u32,
) -> Result<u32, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.parse::<u32>() {
        Ok(n) if (low..=high).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a whole number from {low} to {high}"
        ))),
    }
}

/// The query of `/stats/history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    days: Option<String>,
}

/// How many days `/stats/history` answers with unless asked.
const DEFAULT_HISTORY_DAYS_SHOWN: u32 = 30;

fn parse_history(uri: &axum::http::Uri) -> Result<u32, ApiError> {
    let q: HistoryQuery = parse_query(uri)?;
    number_in(
        "days",
        q.days,
        1,
        crate::MAX_HISTORY_READ,
        DEFAULT_HISTORY_DAYS_SHOWN,
    )
}

/// The `limit` and `place` of `/online`: a place is 1 to
/// [`MAX_PLACE_LEN`] bytes.
fn parse_online(uri: &axum::http::Uri, ceiling: u32) -> Result<(usize, Option<String>), ApiError> {
    let q: OnlineQuery = parse_query(uri)?;
    let limit = limit_in(q.limit, 1, ceiling, DEFAULT_LIMIT.min(ceiling))?;
    if let Some(place) = &q.place
        && (place.is_empty() || place.len() > MAX_PLACE_LEN)
    {
        return Err(ApiError::bad_request(format!(
            "place must be 1 to {MAX_PLACE_LEN} bytes"
        )));
    }
    Ok((limit, q.place))
}

/// The query of `/online/places`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacesQuery {
    limit: Option<String>,
}

/// Most places one `/online/places` answer lists, and how many by default.
const MAX_PLACES_LIMIT: u32 = 1_000;
const DEFAULT_PLACES_LIMIT: u32 = 20;

fn parse_places(uri: &axum::http::Uri) -> Result<usize, ApiError> {
    let q: PlacesQuery = parse_query(uri)?;
    limit_in(q.limit, 1, MAX_PLACES_LIMIT, DEFAULT_PLACES_LIMIT)
}

/// What the fragment's handlers share: the handle, and what was encoded from
/// the current view, so that each body or event is encoded once per refresh.
#[derive(Clone)]
struct Fragment {
    whos: WhosOnline,
    bodies: Arc<json::Bodies>,
    events: Arc<events::Encoded>,
}

async fn method_not_allowed() -> ApiError {
    ApiError(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed".into())
}

fn route<S: Clone + Send + Sync + 'static>(method: MethodRouter<S>) -> MethodRouter<S> {
    method.fallback(method_not_allowed)
}

impl WhosOnline {
    /// The router fragment: `GET /online` (`?place=P` for one place),
    /// `GET /online/places`, `GET /stats`, `GET /stats/history` and
    /// `GET /online/events` (and, with
    /// the `openapi` feature,
    /// `GET /openapi.json`). Merge or nest it into your app; it carries its own
    /// state, so it fits a router of any state type.
    ///
    /// Every answer comes from the [view](WhosOnline::view): no request costs a
    /// Redis or Postgres command, and a thousand open streams cost no more than
    /// none.
    ///
    /// ```
    /// use axum::Router;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
    /// let whos = axum_whos_online::WhosOnline::builder().build()?;
    /// let app: Router = Router::new().nest("/whos-online", whos.router());
    /// # whos.shutdown().await?; Ok(()) }
    /// ```
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let router = axum::Router::new()
            .route("/online", route(get(json::online)))
            .route("/online/places", route(get(json::places)))
            .route("/stats", route(get(json::stats)))
            .route("/stats/history", route(get(json::history)))
            .route("/online/events", route(get(events::online_events)));
        #[cfg(feature = "openapi")]
        let router = if self.shared.serve_openapi {
            router.route("/openapi.json", route(get(openapi::openapi_json)))
        } else {
            router
        };
        router.with_state(Fragment {
            whos: self.clone(),
            bodies: Arc::default(),
            events: Arc::default(),
        })
    }
}
