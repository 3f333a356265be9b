//! `GET /online` and `GET /stats`: JSON from the view, encoded once per refresh,
//! with a strong `ETag` (a hash of the body), `304` on a matching
//! `If-None-Match`, and `Cache-Control: max-age=` the refresh interval.

use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ApiError, Fragment, parse_online, parse_places, parse_query};
use crate::View;
use crate::record::{Record, rfc3339_secs};
use crate::sync::lock;

/// Most bytes of names in one `/online` body: 1,024 names of the longest
/// length. Beyond it the list is cut (the counts stay complete).
const MAX_NAME_BYTES: usize = 256 * 1024;

/// The body of `GET /online` (and of the stream's first `online` event).
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
    /// The names of the bots seen within the window (`Googlebot`, `bingbot`,
    /// ...; `bot` for one the bot filter could not name), sorted, each once.
    pub bots: Vec<String>,
    /// When the view these numbers come from was refreshed (RFC 3339, UTC);
    /// `null` before the first refresh.
    #[serde(serialize_with = "rfc3339_secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub as_of: Option<DateTime<Utc>>,
    /// With `?place=P`: the place, and every field above is about the members
    /// whose latest request was there. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
}

impl OnlineResponse {
    /// The answer for `limit` names from `view`.
    pub(super) fn from_view(view: &View, limit: usize) -> Self {
        Self::from_online(view, view.online(limit), None)
    }

    /// The answer for `limit` names at `place`, from `view`.
    pub(super) fn at_place(view: &View, place: &str, limit: usize) -> Self {
        Self::from_online(view, view.online_in(place, limit), Some(place.to_owned()))
    }

    fn from_online(view: &View, mut online: crate::Online, place: Option<String>) -> Self {
        cut_to_size(&mut online.users);
        Self {
            users: online.users,
            user_count: online.user_count,
            visitor_count: online.visitor_count,
            window_secs: view.window().as_secs(),
            bot_count: online.bot_count,
            bots: online.bots,
            as_of: view.as_of(),
            place,
        }
    }
}

/// The body of `GET /online/places`: the busiest places first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlacesResponse {
    /// Places with members within the window, busiest first (most members of
    /// all kinds; ties by name), at most the asked-for number.
    pub places: Vec<PlaceEntry>,
    /// When the view was refreshed (RFC 3339, UTC); `null` before the first refresh.
    #[serde(serialize_with = "rfc3339_secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub as_of: Option<DateTime<Utc>>,
}

/// One place of [`PlacesResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlaceEntry {
    /// The place, as the host's place hook named it (`"other"` for members
    /// beyond the cap on places).
    pub place: String,
    /// Users whose latest request was there (hidden ones included unless
    /// counted as visitors).
    pub users: u64,
    /// Visitors whose latest request was there.
    pub visitors: u64,
    /// Bots whose latest request was there.
    pub bots: u64,
}

impl PlacesResponse {
    pub(super) fn from_view(view: &View, limit: usize) -> Self {
        Self {
            places: view
                .places()
                .iter()
                .take(limit)
                .map(|p| PlaceEntry {
                    place: p.place.clone(),
                    users: p.counts.users,
                    visitors: p.counts.visitors,
                    bots: p.counts.bots,
                })
                .collect(),
            as_of: view.as_of(),
        }
    }
}

/// The body of `GET /stats` (and of the stream's `stats` events): the record
/// and when the view it comes from was refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsResponse {
    /// The all-time record.
    #[serde(flatten)]
    pub record: Record,
    /// When the view was refreshed (RFC 3339, UTC); `null` before the first refresh.
    #[serde(serialize_with = "rfc3339_secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub as_of: Option<DateTime<Utc>>,
}

impl StatsResponse {
    pub(super) fn from_view(view: &View) -> Self {
        Self {
            record: view.record(),
            as_of: view.as_of(),
        }
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

/// Which body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Which {
    Online { limit: usize, place: Option<String> },
    Places { limit: usize },
    Stats,
}

/// Bodies encoded from the current view, each with its `ETag`.
#[derive(Default)]
pub(super) struct Bodies {
    encoded: Mutex<Vec<Encoded>>,
}

struct Encoded {
    /// The refresh of the view it was encoded from.
    refresh: u64,
    which: Which,
    json: Bytes,
    etag: HeaderValue,
}

/// At most this many bodies are kept per refresh (a few limits are in use;
/// a flood of distinct ones keeps the latest).
const KEPT: usize = 8;

impl Bodies {
    fn get(&self, view: &View, which: Which) -> (Bytes, HeaderValue) {
        let which = &which;
        let refresh = view.refreshes;
        {
            let encoded = lock(&self.encoded);
            if let Some(e) = encoded
                .iter()
                .find(|e| e.refresh == refresh && e.which == *which)
            {
                return (e.json.clone(), e.etag.clone());
            }
        }
        let json = Bytes::from(match which {
            Which::Online { limit, place: None } => {
                to_json(&OnlineResponse::from_view(view, *limit))
            }
            Which::Online {
                limit,
                place: Some(place),
            } => to_json(&OnlineResponse::at_place(view, place, *limit)),
            Which::Places { limit } => to_json(&PlacesResponse::from_view(view, *limit)),
            Which::Stats => to_json(&StatsResponse::from_view(view)),
        });
        let etag = etag_of(&json);
        let mut encoded = lock(&self.encoded);
        encoded.retain(|e| e.refresh == refresh && e.which != *which);
        if encoded.len() >= KEPT {
            encoded.remove(0);
        }
        encoded.push(Encoded {
            refresh,
            which: which.clone(),
            json: json.clone(),
            etag: etag.clone(),
        });
        (json, etag)
    }
}

/// Our bodies are plain data: encoding cannot fail.
pub(super) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// A strong `ETag`: the first 128 bits of the body's SHA-256, so it changes
/// exactly when the body does, on every instance alike.
fn etag_of(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for b in &digest[..16] {
        tag.push_str(&format!("{b:02x}"));
    }
    tag.push('"');
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks
/// for `If-None-Match`), or is `*`.
fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == ours)
}

/// The answer for a body: `304` when the client has it, else `200` with it.
fn answer(headers: &HeaderMap, json: Bytes, etag: HeaderValue, max_age: &HeaderValue) -> Response {
    let mut res = if not_modified(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut res = json.into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, max_age.clone());
    res
}

/// The answer with `which` body of the current view.
fn serve(fragment: &Fragment, headers: &HeaderMap, which: Which) -> Response {
    let view = fragment.whos.view();
    let (json, etag) = fragment.bodies.get(&view, which);
    answer(headers, json, etag, &max_age(fragment))
}

/// `Cache-Control` for the view's bodies: fresh for one refresh interval.
fn max_age(fragment: &Fragment) -> HeaderValue {
    let secs = fragment.whos.shared.refresh.as_secs();
    HeaderValue::from_str(&format!("max-age={secs}"))
        .unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
}

/// Who is online, from the view.
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/online",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000,
         description = "At most this many names, the most recently seen: 1 to the site's ceiling \
                        (200 unless configured, at most 10000); default 100, or the ceiling if lower. \
                        Never more than the view lists (1000 unless configured)."),
        ("place" = Option<String>, Query, description = "Only the members whose latest request was at this place \
                        (1 to 128 bytes; needs a place hook): the same shape, with `place`. An unknown place has zero counts."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag of an earlier answer: 304 while the body is the same."),
    ),
    responses(
        (status = 200, description = "Users (sorted by name) and counts within the window, as of the view's last refresh. \
                                      `Cache-Control: max-age=` the refresh interval; a strong `ETag`.",
         body = OnlineResponse),
        (status = 304, description = "The body named in If-None-Match is still current"),
        (status = 400, description = "Bad query string", body = super::ErrorBody),
    ),
))]
pub(super) async fn online(
    State(fragment): State<Fragment>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (limit, place) = parse_online(&uri, fragment.whos.shared.max_limit)?;
    Ok(serve(&fragment, &headers, Which::Online { limit, place }))
}

/// The busiest places, from the view.
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/online/places",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000,
         description = "At most this many places, the busiest: 1 to 1000, default 20."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag of an earlier answer: 304 while the body is the same."),
    ),
    responses(
        (status = 200, description = "Places with members within the window, busiest first, with counts by kind \
                                      (empty without a place hook). `Cache-Control: max-age=` the refresh interval; a strong `ETag`.",
         body = PlacesResponse),
        (status = 304, description = "The body named in If-None-Match is still current"),
        (status = 400, description = "Bad query string", body = super::ErrorBody),
    ),
))]
pub(super) async fn places(
    State(fragment): State<Fragment>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let limit = parse_places(&uri)?;
    Ok(serve(&fragment, &headers, Which::Places { limit }))
}

/// `/stats` takes no parameters: any is refused, as `/online` refuses unknown ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {}

/// The all-time record, from the view.
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/stats",
    params(
        ("If-None-Match" = Option<String>, Header, description = "An ETag of an earlier answer: 304 while the body is the same."),
    ),
    responses(
        (status = 200, description = "Most users and visitors ever online at once, and when, as of the view's last refresh. \
                                      `Cache-Control: max-age=` the refresh interval; a strong `ETag`.",
         body = StatsResponse),
        (status = 304, description = "The body named in If-None-Match is still current"),
        (status = 400, description = "A query string (`/stats` takes no parameters)", body = super::ErrorBody),
    ),
))]
pub(super) async fn stats(
    State(fragment): State<Fragment>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _: StatsQuery = parse_query(&uri)?;
    Ok(serve(&fragment, &headers, Which::Stats))
}

/// The daily history, from the copy each tick reads.
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/stats/history",
    params(
        ("days" = Option<u32>, Query, minimum = 1, maximum = 366,
         description = "How many UTC days, ending today: 1 to 366, default 30."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag of an earlier answer: 304 while the body is the same."),
    ),
    responses(
        (status = 200, description = "One entry per UTC day, oldest first, ending today (zeros for days without data): \
                                      the peaks of users, visitors and bots (at each tick and each refresh of the view) and when \
                                      each was first reached, and the distinct users and visitors of the day (updated at each tick; HyperLogLog \
                                      estimates with Redis, standard error 0.81%). `as_of` is when the history was last read from its store \
                                      (each tick); today's peaks are never below the current counts. \
                                      `Cache-Control: max-age=` the refresh interval; a strong `ETag`.",
         body = crate::History),
        (status = 304, description = "The body named in If-None-Match is still current"),
        (status = 400, description = "Bad query string (`days` out of range, not a number, repeated, or an unknown key)",
         body = super::ErrorBody),
        (status = 503, description = "No history read yet since start (its store has not answered), or none is kept",
         body = super::ErrorBody),
    ),
))]
pub(super) async fn history(
    State(fragment): State<Fragment>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let days = super::parse_history(&uri)?;
    let history = fragment.whos.history(days).map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("history unavailable: {e}"),
        )
    })?;
    let json = to_json(&history);
    let etag = etag_of(&json);
    Ok(answer(&headers, json.into(), etag, &max_age(&fragment)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        let etag = etag_of(b"{}");
        let tag = etag.to_str().unwrap().to_owned();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            not_modified(&h, &etag)
        };
        assert!(with(&tag));
        assert!(with(&format!("\"x\", W/{tag}")));
        assert!(with("*"));
        assert!(!with("\"x\""));
        assert!(!with(tag.trim_matches('"')), "unquoted is another tag");
        assert!(!not_modified(&HeaderMap::new(), &etag));
        assert_ne!(etag_of(b"{}"), etag_of(b"{ }"));
        assert_eq!(tag.len(), 34);
    }
}
