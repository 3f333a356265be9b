//! The OpenAPI document of the fragment (feature `openapi`).

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::ErrorBody;
use super::admin::{DetailEntry, DetailResponse};
use super::events::OnlineEvent;
use super::json::{OnlineResponse, PlaceEntry, PlacesResponse, StatsResponse};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "whos-online",
        description = "Who is online, the all-time record, and the daily history."
    ),
    paths(
        super::json::online,
        super::json::places,
        super::json::stats,
        super::json::history,
        super::events::online_events,
        super::admin::detail
    ),
    components(schemas(
        OnlineResponse,
        PlacesResponse,
        PlaceEntry,
        DetailResponse,
        DetailEntry,
        StatsResponse,
        OnlineEvent,
        crate::Record,
        crate::History,
        crate::Day,
        ErrorBody
    ))
)]
struct ApiDoc;

/// The OpenAPI document of the router fragment (paths relative to where it is
/// mounted), for merging into an application's own document. It is a `utoipa`
/// 6 type: merge it into a document built with `utoipa` 6.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

pub(super) async fn openapi_json() -> Response {
    static DOC: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(|| serde_json::to_value(openapi()).unwrap_or_default());
    let mut res = Json(&*DOC).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
