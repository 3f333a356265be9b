//! Which requests are not reported at all: health checks, static assets, the
//! `/online` poll itself, as the application chooses.

use std::sync::Arc;

use http::request::Parts;

type Predicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// Requests to skip, by path prefix or predicate. Built through
/// [`Builder::skip_path_prefix`](crate::Builder::skip_path_prefix) and
/// [`Builder::skip_if`](crate::Builder::skip_if).
#[derive(Clone, Default)]
pub(crate) struct Skip {
    prefixes: Vec<String>,
    predicates: Vec<Predicate>,
}

impl Skip {
    pub(crate) fn add_prefix(&mut self, prefix: String) {
        self.prefixes.push(prefix);
    }

    pub(crate) fn add_predicate(&mut self, p: Predicate) {
        self.predicates.push(p);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.predicates.is_empty()
    }

    /// Whether the request is skipped. A prefix matches whole path segments:
    /// `/static` skips `/static` and `/static/app.css`, not `/statistics`.
    pub(crate) fn skips(&self, req: &Parts) -> bool {
        let path = req.uri.path();
        self.prefixes.iter().any(|p| segment_prefix(path, p))
            || self.predicates.iter().any(|f| f(req))
    }
}

fn segment_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::segment_prefix;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(segment_prefix("/static", "/static"));
        assert!(segment_prefix("/static/app.css", "/static"));
        assert!(segment_prefix("/static/app.css", "/static/"));
        assert!(!segment_prefix("/statistics", "/static"));
        assert!(!segment_prefix("/", "/static"));
        assert!(segment_prefix("/anything", "/"));
    }
}
