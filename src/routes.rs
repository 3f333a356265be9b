//! The router fragment: `GET /online` and `GET /stats`, JSON only.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde::{Deserialize, Serialize};

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::WhosOnline;
use crate::config::DEFAULT_LIMIT;

/// Most bytes of names in one `/online` body: 1,024 names of the longest
/// length. Beyond it the list is cut (the counts stay complete).
const MAX_NAME_BYTES: usize = 256 * 1024;
/// How long an encoded `/online` body is reused for the same `limit`, unless
/// this instance wrote or ticked meanwhile, or the clock moved to another second.
const BODY_REUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The body of `GET /online`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OnlineResponse {
    /// Names of users seen within the window, sorted by name.
    pub users: Vec<String>,
    /// Users seen within the window.
    pub user_count: u64,
    /// Visitors seen within the window.
    pub visitor_count: u64,
    /// The window, in seconds.
    pub window_secs: u64,
    /// Bots (crawlers) seen within the window; never counted as visitors.
    pub bot_count: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnlineQuery {
    limit: Option<String>,
}

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        no_store((self.0, Json(ErrorBody { error: self.1 })).into_response())
    }
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn parse_limit(
    query: Result<Query<OnlineQuery>, QueryRejection>,
    ceiling: u32,
) -> Result<usize, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let Query(q) = query.map_err(|e| bad(format!("bad query string: {}", e.body_text())))?;
    let Some(raw) = q.limit else {
        return Ok(DEFAULT_LIMIT.min(ceiling) as usize);
    };
    match raw.parse::<u32>() {
        Ok(n) if (1..=ceiling).contains(&n) => Ok(n as usize),
        _ => Err(bad(format!(
            "limit must be a whole number from 1 to {ceiling}"
        ))),
    }
}

/// What the fragment's handlers share: the handle, and the `/online` bodies
/// encoded lately, so that a burst of identical reads costs one store read.
#[derive(Clone)]
struct Fragment {
    whos: WhosOnline,
    bodies: Arc<Mutex<Vec<Body>>>,
}

/// An encoded `/online` body, and what it was read under.
struct Body {
    key: BodyKey,
    made: Instant,
    json: Bytes,
}

/// A body is reused only while all of these are unchanged.
#[derive(PartialEq, Eq)]
struct BodyKey {
    limit: usize,
    /// Writes and ticks of this instance: either may change the answer.
    flushes: u64,
    ticks: u64,
    /// The configured clock's second: the window moves with it.
    second: i64,
}

impl Fragment {
    fn cached(&self, key: &BodyKey) -> Option<Bytes> {
        let bodies = crate::sync::lock(&self.bodies);
        bodies
            .iter()
            .find(|b| b.key == *key && b.made.elapsed() < BODY_REUSE)
            .map(|b| b.json.clone())
    }

    fn keep(&self, key: BodyKey, json: Bytes) {
        let mut bodies = crate::sync::lock(&self.bodies);
        bodies.retain(|b| b.made.elapsed() < BODY_REUSE && b.key.limit != key.limit);
        // A few limits at most are in use; a flood of distinct ones keeps four.
        if bodies.len() >= 4 {
            bodies.remove(0);
        }
        bodies.push(Body {
            key,
            made: Instant::now(),
            json,
        });
    }
}

/// Keeps the names of `users` (sorted) within [`MAX_NAME_BYTES`].
fn cut_to_size(users: &mut Vec<String>) {
    let mut bytes = 0;
    let fits = users
        .iter()
        .take_while(|u| {
            bytes += u.len();
            bytes <= MAX_NAME_BYTES
        })
        .count();
    users.truncate(fits);
}

/// Who is online now.
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/online",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 10000,
            description = "At most this many names, the most recently seen: 1 to the site's ceiling \
                           (200 unless configured, at most 10000); default 100, or the ceiling if lower. \
                           The body may be up to one second old.")),
    responses(
        (status = 200, description = "Users (sorted by name) and counts within the window", body = OnlineResponse),
        (status = 400, description = "Bad query string", body = ErrorBody),
        (status = 503, description = "The presence store is unavailable", body = ErrorBody),
    ),
))]
async fn online(
    State(fragment): State<Fragment>,
    query: Result<Query<OnlineQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let whos = &fragment.whos;
    let limit = parse_limit(query, whos.shared.max_limit)?;
    let counters = whos.shared.counters.snapshot();
    let key = BodyKey {
        limit,
        flushes: counters.flushes,
        ticks: counters.ticks,
        second: whos.shared.clock.unix_secs(),
    };
    if let Some(json) = fragment.cached(&key) {
        return Ok(json_body(json));
    }
    let mut online = whos.online(limit).await.map_err(|e| {
        tracing::warn!(error = %e, "whos-online: /online could not read the presence store");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "presence store unavailable".into(),
        )
    })?;
    cut_to_size(&mut online.users);
    let body = OnlineResponse {
        users: online.users,
        user_count: online.user_count,
        visitor_count: online.visitor_count,
        window_secs: whos.window().as_secs(),
        bot_count: online.bot_count,
    };
    let json = Bytes::from(serde_json::to_vec(&body).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding failed: {e}"),
        )
    })?);
    fragment.keep(key, json.clone());
    Ok(json_body(json))
}

fn json_body(json: Bytes) -> Response {
    no_store(
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
    )
}

/// `/stats` takes no parameters: any is refused, as `/online` refuses unknown ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {}

/// Longest query string `/stats` accepts (one of separators only, since it
/// takes no parameters), in bytes.
const MAX_STATS_QUERY: usize = 256;

fn check_stats_query(uri: &axum::http::Uri) -> Result<(), ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    if uri.query().map_or(0, str::len) > MAX_STATS_QUERY {
        return Err(bad(format!(
            "bad query string: longer than {MAX_STATS_QUERY} bytes"
        )));
    }
    Query::<StatsQuery>::try_from_uri(uri)
        .map(|_| ())
        .map_err(|e| bad(format!("bad query string: {}", e.body_text())))
}

/// The all-time record.
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/stats",
    responses(
        (status = 200, description = "Most users and visitors ever online at once, and when", body = crate::Record),
        (status = 400, description = "A query string (`/stats` takes no parameters)", body = ErrorBody),
        (status = 503, description = "Neither the cache nor the record store answered", body = ErrorBody),
    ),
))]
async fn stats(
    State(fragment): State<Fragment>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    check_stats_query(&uri)?;
    let record = fragment.whos.record().await.map_err(|e| {
        tracing::warn!(error = %e, "whos-online: /stats could not read the record");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "record store unavailable".into(),
        )
    })?;
    Ok(no_store(Json(record).into_response()))
}

async fn method_not_allowed() -> ApiError {
    ApiError(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed".into())
}

fn route(method: MethodRouter<Fragment>) -> MethodRouter<Fragment> {
    method.fallback(method_not_allowed)
}

impl WhosOnline {
    /// The router fragment: `GET /online` and `GET /stats`. Merge or nest it into
    /// your app; it carries its own state, so it fits a router of any state type.
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
            .route("/online", route(get(online)))
            .route("/stats", route(get(stats)));
        #[cfg(feature = "openapi")]
        let router = if self.shared.serve_openapi {
            router.route("/openapi.json", route(get(openapi_json)))
        } else {
            router
        };
        router.with_state(Fragment {
            whos: self.clone(),
            bodies: Arc::default(),
        })
    }
}

#[cfg(feature = "openapi")]
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "whos-online",
        description = "Who is online, and the all-time record."
    ),
    paths(online, stats),
    components(schemas(OnlineResponse, crate::Record, ErrorBody))
)]
struct ApiDoc;

/// The OpenAPI document of the router fragment (paths relative to where it is
/// mounted), for merging into an application's own document. It is a `utoipa`
/// 6 type: merge it into a document built with `utoipa` 6.
#[cfg(feature = "openapi")]
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

#[cfg(feature = "openapi")]
async fn openapi_json() -> Response {
    static DOC: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(|| serde_json::to_value(openapi()).unwrap_or_default());
    no_store(Json(&*DOC).into_response())
}
