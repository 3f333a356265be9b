//! Who is this request: a logged-in user, through a pluggable hook, or else an
//! anonymous visitor, by client address.
//!
//! A user hook implements [`IdentifyUser`], in the shape of tower-governor's
//! `KeyExtractor` but asynchronous. Ready ones: [`NoUsers`] (everyone is a visitor),
//! [`identify_fn`] (a closure) and, with the `tower-sessions` feature,
//! [`SessionUser`](crate::SessionUser).
//!
//! Visitors are keyed by the client IP: the TCP peer address by default (the server
//! must be started with `into_make_service_with_connect_info::<SocketAddr>()`), or
//! the header of a trusted proxy named with [`ClientIpSource`]. When that header is
//! missing or malformed, the peer address is used.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use axum::extract::ConnectInfo;
use axum_client_ip::ClientIpSource;
use http::request::Parts;

/// Longest user name accepted, in bytes; longer names are dropped and counted.
pub const MAX_USER_NAME_LEN: usize = 256;

/// A logged-in user, as reported by an [`IdentifyUser`] hook.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    name: String,
    hidden: bool,
}

impl User {
    /// A user called `name`: the name shown in `/online`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            hidden: false,
        }
    }

    /// A user who chose to be invisible: counted in `user_count` and the record,
    /// never listed by name.
    pub fn hidden(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            hidden: true,
        }
    }

    /// Sets whether the user is hidden.
    pub fn with_hidden(mut self, hidden: bool) -> Self {
        self.hidden = hidden;
        self
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the user is counted but not listed.
    pub fn is_hidden(&self) -> bool {
        self.hidden
    }

    pub(crate) fn into_parts(self) -> (String, bool) {
        (self.name, self.hidden)
    }

    /// Names must be non-empty, at most [`MAX_USER_NAME_LEN`] bytes and free of
    /// control characters.
    pub(crate) fn is_valid(&self) -> bool {
        !self.name.is_empty()
            && self.name.len() <= MAX_USER_NAME_LEN
            && !self.name.chars().any(char::is_control)
    }
}

/// The future an [`IdentifyUser`] hook returns.
pub type UserFuture = Pin<Box<dyn Future<Output = Option<User>> + Send + 'static>>;

/// Decides whether a request comes from a logged-in user.
///
/// [`identify`](Self::identify) runs before the request reaches the handler and
/// takes what it needs from the request (a session handle, a header). Its future is
/// polled once the response is ready, so a login handler's session change already
/// counts, and it is never awaited on the request path: if it cannot finish at once,
/// it finishes on a spawned task. Return `None` for "not a user, no work to do".
pub trait IdentifyUser: Send + Sync + 'static {
    /// Starts identifying the request.
    fn identify(&self, req: &Parts) -> Option<UserFuture>;
}

/// Nobody is a user: every request counts as a visitor. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUsers;

impl IdentifyUser for NoUsers {
    fn identify(&self, _req: &Parts) -> Option<UserFuture> {
        None
    }
}

/// An [`IdentifyUser`] from a closure; see [`identify_fn`].
#[derive(Clone)]
pub struct IdentifyFn<F>(F);

impl<F> std::fmt::Debug for IdentifyFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentifyFn")
    }
}

/// Makes a user hook of a closure that takes the request's parts and returns a
/// future of `Option<User>`; the future must own what it uses.
///
/// ```
/// use whos_online::{identify_fn, User};
/// // Trust a header set by an authenticating proxy in front of the app.
/// let hook = identify_fn(|req| {
///     let name = req.headers.get("x-user").and_then(|v| v.to_str().ok()).map(User::new);
///     async move { name }
/// });
/// # let _ = whos_online::WhosOnline::builder().identify_users(hook);
/// ```
pub fn identify_fn<F, Fut>(f: F) -> IdentifyFn<F>
where
    F: Fn(&Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<User>> + Send + 'static,
{
    IdentifyFn(f)
}

impl<F, Fut> IdentifyUser for IdentifyFn<F>
where
    F: Fn(&Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<User>> + Send + 'static,
{
    fn identify(&self, req: &Parts) -> Option<UserFuture> {
        Some(Box::pin((self.0)(req)))
    }
}

/// The client address of a request under `source`, falling back to the TCP peer
/// address when the named header is absent or malformed. IPv4-mapped IPv6
/// addresses are folded to IPv4 so one client has one identity.
pub(crate) fn client_ip(source: &ClientIpSource, req: &Parts) -> Option<IpAddr> {
    let headers = &req.headers;
    let from_header = match source {
        ClientIpSource::ConnectInfo => None,
        ClientIpSource::RightmostXForwardedFor => {
            client_ip::rightmost_x_forwarded_for(headers).ok()
        }
        ClientIpSource::RightmostForwarded => client_ip::rightmost_forwarded(headers).ok(),
        ClientIpSource::XRealIp => client_ip::x_real_ip(headers).ok(),
        ClientIpSource::CfConnectingIp => client_ip::cf_connecting_ip(headers).ok(),
        ClientIpSource::TrueClientIp => client_ip::true_client_ip(headers).ok(),
        ClientIpSource::FlyClientIp => client_ip::fly_client_ip(headers).ok(),
        ClientIpSource::CloudFrontViewerAddress => {
            client_ip::cloudfront_viewer_address(headers).ok()
        }
        ClientIpSource::XEnvoyExternalAddress => client_ip::x_envoy_external_address(headers).ok(),
        _ => None,
    };
    from_header
        .or_else(|| {
            req.extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ci| ci.0.ip())
        })
        .map(|ip| ip.to_canonical())
}
