//! Places: where a request is, as the host names it ("users browsing this
//! forum").
//!
//! A host names places with a hook on the builder
//! ([`Builder::places`](crate::Builder::places)): a synchronous function of the
//! request's parts that returns a short string, or `None` for a request that
//! does not move anyone (a stylesheet, an API poll, the live stream). Two are
//! ready: [`place_by_matched_path`] (axum's route template, `/forum/{id}`) and
//! [`place_by_path`] (the path itself). Without a hook there are no places and
//! nothing is spent on them.

use std::sync::Arc;

use axum::extract::MatchedPath;
use http::request::Parts;

/// Longest place kept, in bytes: a longer one is cut at a character boundary.
pub const MAX_PLACE_LEN: usize = 128;

/// Default cap on the distinct places tracked within the window; see
/// [`Builder::max_places`](crate::Builder::max_places).
pub const DEFAULT_MAX_PLACES: usize = 10_000;

/// The place reports are counted under once [`max_places`](crate::Builder::max_places)
/// distinct places are tracked: a crawler that walks a million URLs cannot grow
/// the store without bound.
pub const OTHER_PLACE: &str = "other";

/// A place hook, as the builder keeps it.
pub(crate) type PlaceHook = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// The route template axum matched for the request (`/forum/{id}`), from
/// [`MatchedPath`]; `None` when no route matched (a 404) or when the layer
/// wraps the router from outside, where routing has not happened yet: add the
/// layer with `Router::layer` for this hook.
///
/// ```
/// use axum_whos_online::{WhosOnline, place_by_matched_path};
/// let builder = WhosOnline::builder().places(place_by_matched_path);
/// ```
pub fn place_by_matched_path(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
}

/// The request's path (`/forum/3/topic/9`), without the query string. Every
/// distinct URL is a place of its own, up to [`max_places`](crate::Builder::max_places);
/// to group them, write a hook of your own:
///
/// ```
/// use axum_whos_online::WhosOnline;
/// // `/forum/3/topic/9` and `/forum/3` are both "forum:3"; other pages are
/// // places by their path; the live stream moves nobody.
/// let builder = WhosOnline::builder().places(|req| {
///     let path = req.uri.path();
///     if path.starts_with("/online") {
///         return None;
///     }
///     match path.strip_prefix("/forum/") {
///         Some(rest) => Some(format!("forum:{}", rest.split('/').next().unwrap_or(""))),
///         None => Some(path.to_owned()),
///     }
/// });
/// ```
pub fn place_by_path(parts: &Parts) -> Option<String> {
    Some(parts.uri.path().to_owned())
}

/// A hook's answer as it is kept: control characters replaced by U+FFFD, cut
/// to [`MAX_PLACE_LEN`] bytes at a character boundary; empty is no place.
pub(crate) fn clean(place: String) -> Option<Box<str>> {
    let mut place = if place.contains(char::is_control) {
        place.replace(char::is_control, "\u{fffd}")
    } else {
        place
    };
    if place.len() > MAX_PLACE_LEN {
        let mut end = MAX_PLACE_LEN;
        while !place.is_char_boundary(end) {
            end -= 1;
        }
        place.truncate(end);
    }
    (!place.is_empty()).then(|| place.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_places_are_cut_at_a_character_boundary() {
        assert_eq!(clean(String::new()), None);
        assert_eq!(clean("/forum/{id}".into()).as_deref(), Some("/forum/{id}"));
        let exact = "a".repeat(MAX_PLACE_LEN);
        assert_eq!(clean(exact.clone()).as_deref(), Some(exact.as_str()));
        // 127 ASCII bytes then a 3-byte character: cut before it.
        let long = format!("{}€€", "a".repeat(MAX_PLACE_LEN - 1));
        let cut = clean(long).unwrap();
        assert_eq!(cut.len(), MAX_PLACE_LEN - 1);
        assert!(cut.chars().all(|c| c == 'a'));
        let all_wide = "€".repeat(100);
        let cut = clean(all_wide).unwrap();
        assert_eq!(cut.len(), 126);
        assert_eq!(
            clean("a\nb\u{0}".into()).as_deref(),
            Some("a\u{fffd}b\u{fffd}")
        );
    }

    #[test]
    fn ready_hooks() {
        let (parts, ()) = http::Request::get("/forum/3/topic/9?page=2")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(place_by_path(&parts).as_deref(), Some("/forum/3/topic/9"));
        // Outside a router: no route template (tests/places.rs has one).
        assert_eq!(place_by_matched_path(&parts), None);
    }
}
