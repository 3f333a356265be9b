//! `GET /online/detail`: who is where, for admins. A fragment of its own
//! ([`WhosOnline::admin_router`]) that the host mounts behind its own
//! authorisation; the public fragment never serves it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, limit_in, parse_query, route};
use crate::WhosOnline;
use crate::config::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::record::rfc3339_secs;
use crate::view::{Whereabouts, WhoIsWhere};

/// The body of `GET /online/detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DetailResponse {
    /// Listed users with when they were last seen and where, most recently
    /// seen first. Hidden users never appear.
    pub users: Vec<DetailEntry>,
    /// Bots by name, with where they were, most recently seen first.
    pub bots: Vec<DetailEntry>,
    /// Users within the window (hidden ones included unless counted as visitors).
    pub user_count: u64,
    /// Of `user_count`, how many are hidden.
    pub hidden_count: u64,
    /// Visitors within the window.
    pub visitor_count: u64,
    /// Bots within the window.
    pub bot_count: u64,
    /// When the view was refreshed (RFC 3339, UTC); `null` before the first refresh.
    #[serde(serialize_with = "rfc3339_secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub as_of: Option<DateTime<Utc>>,
}

/// A user or a bot of [`DetailResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DetailEntry {
    /// The user's name, or the bot's.
    pub name: String,
    /// When last seen (RFC 3339, UTC); `null` for a bot when places are off.
    #[serde(serialize_with = "rfc3339_secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_seen: Option<DateTime<Utc>>,
    /// Where their latest request was, if the host names places.
    pub place: Option<String>,
}

impl From<Whereabouts> for DetailEntry {
    fn from(w: Whereabouts) -> Self {
        Self {
            name: w.name,
            last_seen: w.last_seen,
            place: w.place,
        }
    }
}

impl From<WhoIsWhere> for DetailResponse {
    fn from(w: WhoIsWhere) -> Self {
        Self {
            users: w.users.into_iter().map(Into::into).collect(),
            bots: w.bots.into_iter().map(Into::into).collect(),
            user_count: w.counts.users,
            hidden_count: w.counts.hidden,
            visitor_count: w.counts.visitors,
            bot_count: w.counts.bots,
            as_of: w.as_of,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetailQuery {
    limit: Option<String>,
}

/// Who is where, from the view.
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/online/detail",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000,
         description = "At most this many users, and this many bots: 1 to 10000, default 100. \
                        Never more users than the view lists (1000 unless configured)."),
    ),
    responses(
        (status = 200, description = "Users with last-seen time and place, bots by name and place, and the counts. \
                                      Served only by `admin_router()`, which the host mounts behind its own \
                                      authorisation. `Cache-Control: no-store, private`.",
         body = DetailResponse),
        (status = 400, description = "Bad query string", body = super::ErrorBody),
    ),
))]
pub(super) async fn detail(State(whos): State<WhosOnline>, uri: Uri) -> Result<Response, ApiError> {
    let q: DetailQuery = parse_query(&uri)?;
    let limit = limit_in(q.limit, 1, MAX_LIMIT, DEFAULT_LIMIT)?;
    let body = DetailResponse::from(whos.who_is_where(limit));
    let mut res = Json(body).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, private"),
    );
    Ok(res)
}

impl WhosOnline {
    /// The admin fragment: `GET /online/detail`, who is where (see
    /// [`who_is_where`](Self::who_is_where)). It names users with when they
    /// were last seen and where, so mount it behind your own authorisation;
    /// the public [`router`](Self::router) never serves it.
    ///
    /// ```
    /// use axum::{Router, extract::Request, http::StatusCode, middleware::{self, Next}, response::Response};
    ///
    /// /// Your own check: here a header, in your app the session's user.
    /// async fn admins_only(req: Request, next: Next) -> Result<Response, StatusCode> {
    ///     match req.headers().get("x-role") {
    ///         Some(role) if role == "admin" => Ok(next.run(req).await),
    ///         _ => Err(StatusCode::FORBIDDEN),
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
    /// let whos = axum_whos_online::WhosOnline::builder().build()?;
    /// let app: Router = Router::new()
    ///     .merge(whos.router())
    ///     .nest("/admin", whos.admin_router().route_layer(middleware::from_fn(admins_only)));
    /// # whos.shutdown().await?; Ok(()) }
    /// ```
    pub fn admin_router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        axum::Router::new()
            .route("/online/detail", route(get(detail)))
            .with_state(self.clone())
    }
}
