//! Who is this request: a logged-in user, through a pluggable hook, or else an
//! anonymous visitor, by client address.
//!
//! A user hook implements [`IdentifyUser`], in the shape of tower-governor's
//! `KeyExtractor`, answering at once or with a future ([`Identity`]). Ready ones:
//! [`NoUsers`] (everyone is a visitor), [`identify_now`] (a closure that knows at
//! once), [`identify_fn`] (an async closure) and, with the `tower-sessions`
//! feature, [`SessionUser`](crate::SessionUser).
//!
//! Visitors are keyed by the client IP: the TCP peer address by default (the server
//! must be started with `into_make_service_with_connect_info::<SocketAddr>()`), or
//! the header of a trusted proxy named with [`ClientIpSource`]. When that header is
//! missing or malformed, the peer address is used.

mod forwarded;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;

use axum::extract::ConnectInfo;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};

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

    /// Names must be non-empty, at most [`MAX_USER_NAME_LEN`] bytes, free of
    /// leading and trailing whitespace, and free of characters that render as
    /// nothing or reorder text (see [`renders_invisibly`]): otherwise two
    /// entries of `/online` could look alike, or one look empty.
    pub(crate) fn is_valid(&self) -> bool {
        let name = self.name.as_str();
        !name.is_empty()
            && name.len() <= MAX_USER_NAME_LEN
            && name.trim() == name
            && !name.chars().any(|c| c.is_control() || renders_invisibly(c))
    }
}

/// Characters a user name may not hold because they render as nothing, as a
/// blank, as a line break, or change the direction of the text around them:
/// Unicode's format characters (category Cf: zero-width spaces and joiners,
/// bidi controls such as U+202E, the byte-order mark, tag characters), line and
/// paragraph separators (Zl, Zp), the other default-ignorable code points
/// (variation selectors, the combining grapheme joiner, Mongolian free
/// variation selectors), and the Hangul and Braille fillers that display as
/// blanks (U+115F, U+1160, U+3164, U+FFA0, U+2800).
fn renders_invisibly(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x206F
            | 0x2800
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// The future an [`IdentifyUser`] hook returns when it cannot answer at once.
pub type UserFuture = Pin<Box<dyn Future<Output = Option<User>> + Send + 'static>>;

/// What an [`IdentifyUser`] hook says of a request.
pub enum Identity {
    /// Not a logged-in user: the request counts as a visitor, or as a bot.
    Anonymous,
    /// A logged-in user, known as the request arrives.
    User(User),
    /// Known once the response is ready: the future is polled then (so a login
    /// handler's session change already counts), and, if it cannot finish at
    /// once, finished on a spawned task, under a cap on such tasks
    /// ([`Builder::max_identifying`](crate::Builder::max_identifying)) and a
    /// timeout ([`Builder::identify_timeout`](crate::Builder::identify_timeout)):
    /// beyond either, the request is not reported, only counted. It is never
    /// awaited on the request path.
    Deferred(UserFuture),
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::User(u) => f.debug_tuple("User").field(u).finish(),
            Self::Deferred(_) => f.write_str("Deferred(..)"),
        }
    }
}

impl From<Option<User>> for Identity {
    fn from(user: Option<User>) -> Self {
        user.map_or(Self::Anonymous, Self::User)
    }
}

/// Decides whether a request comes from a logged-in user.
///
/// [`identify`](Self::identify) runs before the request reaches the handler and
/// takes what it needs from the request (a session handle, a header). A hook
/// that knows at once answers [`Identity::User`] or [`Identity::Anonymous`]: no
/// allocation, nothing left to run. A hook that must wait (a session store, say)
/// answers [`Identity::Deferred`]; its future is polled once the response is
/// ready and never awaited on the request path.
pub trait IdentifyUser: Send + Sync + 'static {
    /// Identifies the request, or starts to.
    fn identify(&self, req: &Parts) -> Identity;

    /// A cheap key for who sent the request, taken before [`identify`](Self::identify)
    /// runs: for a session-backed hook, a keyed hash of the session id (never the
    /// raw id: the layer keeps the key). Default: `None`.
    ///
    /// When it gives a key, the layer remembers the user a deferred answer named
    /// for that key for one [`resolution`](crate::Builder::resolution), and
    /// reports further requests with the same key as that user without calling
    /// `identify`: one session load per resolution instead of one per request.
    /// An answer of "nobody" is not remembered. With
    /// [`SessionKey::rechecked_by`], a key that no longer holds once the
    /// response is ready (the handler ended or replaced the session) is
    /// forgotten at once. The cost: a user who logs out but keeps the same key
    /// (the session id is kept and only the name removed) still counts as the
    /// user until the resolution has passed, as does a change of name or of
    /// the hidden flag; a new key is always looked up afresh. Two requests with
    /// the same key must be the same user.
    fn session_key(&self, req: &Parts) -> Option<SessionKey> {
        let _ = req;
        None
    }
}

/// What [`IdentifyUser::session_key`] gives: the key, and optionally a way to
/// read it again once the response is ready.
pub struct SessionKey {
    pub(crate) key: u64,
    pub(crate) recheck: Option<Box<dyn Fn() -> Option<u64> + Send + Sync>>,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey").finish_non_exhaustive()
    }
}

impl SessionKey {
    /// A key standing for who sent the request.
    pub fn new(key: u64) -> Self {
        Self { key, recheck: None }
    }

    /// Reads the key again once the response is ready: when the handler ended
    /// or replaced the session (a logout, `cycle_id` at login), it differs, and
    /// the answer remembered for the old key is forgotten at once instead of at
    /// the end of the resolution.
    pub fn rechecked_by(
        mut self,
        recheck: impl Fn() -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        self.recheck = Some(Box::new(recheck));
        self
    }

    /// Whether the key still holds once the response is ready.
    pub(crate) fn holds(&self) -> bool {
        self.recheck.as_ref().is_none_or(|f| f() == Some(self.key))
    }
}

/// Nobody is a user: every request counts as a visitor. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUsers;

impl IdentifyUser for NoUsers {
    fn identify(&self, _req: &Parts) -> Identity {
        Identity::Anonymous
    }
}

/// An [`IdentifyUser`] from an async closure; see [`identify_fn`].
#[derive(Clone)]
pub struct IdentifyFn<F>(F);

impl<F> std::fmt::Debug for IdentifyFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentifyFn")
    }
}

/// Makes a user hook of a closure that takes the request's parts and returns a
/// future of `Option<User>`, polled once the response is ready; the future must
/// own what it uses. For a hook that knows at once, [`identify_now`] is cheaper.
///
/// ```
/// use axum_whos_online::{identify_fn, User};
/// #[derive(Clone)]
/// struct Directory;
/// impl Directory {
///     async fn name_of(&self, token: String) -> Option<String> { Some(token) }
/// }
/// let directory = Directory;
/// let hook = identify_fn(move |req| {
///     let token = req.headers.get("x-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
///     let directory = directory.clone();
///     async move { Some(User::new(directory.name_of(token?).await?)) }
/// });
/// # let _ = axum_whos_online::WhosOnline::builder().identify_users(hook);
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
    fn identify(&self, req: &Parts) -> Identity {
        Identity::Deferred(Box::pin((self.0)(req)))
    }
}

/// An [`IdentifyUser`] from a plain closure; see [`identify_now`].
#[derive(Clone)]
pub struct IdentifyNow<F>(F);

impl<F> std::fmt::Debug for IdentifyNow<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentifyNow")
    }
}

/// Makes a user hook of a closure that names the user from the request as it
/// arrives: no future, no allocation, the cheapest kind of hook.
///
/// ```
/// use http::HeaderName;
/// use axum_whos_online::{identify_now, User};
/// // Trust a header set by an authenticating proxy in front of the app.
/// const X_USER: HeaderName = HeaderName::from_static("x-user");
/// let hook = identify_now(|req| {
///     req.headers.get(&X_USER).and_then(|v| v.to_str().ok()).map(User::new)
/// });
/// # let _ = axum_whos_online::WhosOnline::builder().identify_users(hook);
/// ```
pub fn identify_now<F>(f: F) -> IdentifyNow<F>
where
    F: Fn(&Parts) -> Option<User> + Send + Sync + 'static,
{
    IdentifyNow(f)
}

impl<F> IdentifyUser for IdentifyNow<F>
where
    F: Fn(&Parts) -> Option<User> + Send + Sync + 'static,
{
    fn identify(&self, req: &Parts) -> Identity {
        (self.0)(req).into()
    }
}

/// Where a visitor's address comes from: the TCP peer, or a header that a proxy
/// in front of the app sets. See [`Builder::client_ip_source`](crate::Builder::client_ip_source).
///
/// A header is only as trustworthy as the proxy that writes it: name one only
/// when the app cannot be reached except through a proxy you run (or your
/// platform runs) that sets or overwrites it on every request. Otherwise any
/// client can send the header and be counted as whatever address it likes.
///
/// When the named header is absent or malformed, the TCP peer address is used,
/// so a bad header never fails a request. A header that must occur once
/// (`X-Real-IP`, `CF-Connecting-IP`, `True-Client-IP`, `Fly-Client-IP`,
/// `X-Envoy-External-Address`) is not trusted when it occurs twice, since the
/// client may have sent one of its own. IPv4-mapped IPv6 addresses
/// (`::ffff:192.0.2.1`) are folded to IPv4.
///
/// Parsed from its variant's name (`"RightmostXForwardedFor".parse()`), for
/// settings read from the environment; [`Display`](fmt::Display) writes the
/// same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ClientIpSource {
    /// The TCP peer address, from axum's `ConnectInfo<SocketAddr>`: the server
    /// must be started with `into_make_service_with_connect_info::<SocketAddr>()`.
    /// Trusts no header. Use it when the app faces the internet directly; behind
    /// a proxy, every visitor would be the proxy. The default.
    #[default]
    ConnectInfo,
    /// The rightmost address of the last `X-Forwarded-For` header, the one the
    /// nearest proxy appended (entries to its left are whatever the client
    /// sent). Use it behind one proxy or load balancer that appends to
    /// `X-Forwarded-For` (nginx's `$proxy_add_x_forwarded_for`, AWS ALB,
    /// HAProxy's `option forwardfor`). Behind two proxies of your own, the
    /// rightmost entry is the first proxy: name a header that proxy sets instead.
    RightmostXForwardedFor,
    /// The `X-Real-IP` header, which must occur once. Use it behind nginx with
    /// `proxy_set_header X-Real-IP $remote_addr;` (which overwrites what the
    /// client sent).
    XRealIp,
    /// The `CF-Connecting-IP` header, which must occur once. Use it behind
    /// Cloudflare, with the origin reachable only from Cloudflare's addresses.
    CfConnectingIp,
    /// The `True-Client-IP` header, which must occur once. Use it behind Akamai,
    /// or Cloudflare Enterprise with the header turned on.
    TrueClientIp,
    /// The `Fly-Client-IP` header, which must occur once. Use it on Fly.io,
    /// whose proxy sets it. Health checks do not carry it; they count as the peer.
    FlyClientIp,
    /// The `X-Envoy-External-Address` header, which must occur once. Use it
    /// behind Envoy or Istio configured to set it for external requests.
    XEnvoyExternalAddress,
    /// The `for=` address of the rightmost element of the last RFC 7239
    /// `Forwarded` header, the one the nearest proxy appended (elements to its
    /// left are whatever the client sent). `for=unknown` and obfuscated
    /// identifiers (`for=_hidden`) name no address: the peer is used. Use it
    /// behind a proxy that appends `Forwarded` (nginx with a `Forwarded` map,
    /// HAProxy's `option forwarded`).
    RightmostForwarded,
    /// The address in the last `CloudFront-Viewer-Address` header, written by
    /// CloudFront as `address:port` (IPv6 unbracketed). Use it behind AWS
    /// CloudFront with the header added by an origin request policy.
    CloudFrontViewerAddress,
}

impl ClientIpSource {
    /// Every source, in declaration order.
    const ALL: [Self; 9] = [
        Self::ConnectInfo,
        Self::RightmostXForwardedFor,
        Self::XRealIp,
        Self::CfConnectingIp,
        Self::TrueClientIp,
        Self::FlyClientIp,
        Self::XEnvoyExternalAddress,
        Self::RightmostForwarded,
        Self::CloudFrontViewerAddress,
    ];

    /// The variant's name, as [`FromStr`] takes it.
    const fn name(self) -> &'static str {
        match self {
            Self::ConnectInfo => "ConnectInfo",
            Self::RightmostXForwardedFor => "RightmostXForwardedFor",
            Self::XRealIp => "XRealIp",
            Self::CfConnectingIp => "CfConnectingIp",
            Self::TrueClientIp => "TrueClientIp",
            Self::FlyClientIp => "FlyClientIp",
            Self::XEnvoyExternalAddress => "XEnvoyExternalAddress",
            Self::RightmostForwarded => "RightmostForwarded",
            Self::CloudFrontViewerAddress => "CloudFrontViewerAddress",
        }
    }
}

impl fmt::Display for ClientIpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ClientIpSource {
    type Err = ParseClientIpSourceError;

    /// The source of that variant name, exactly as written (`"XRealIp"`, not
    /// `"x-real-ip"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|source| source.name() == s)
            .ok_or_else(|| ParseClientIpSourceError {
                input: s.to_owned(),
            })
    }
}

/// A string that names no [`ClientIpSource`]; its message lists the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseClientIpSourceError {
    input: String,
}

impl fmt::Display for ParseClientIpSourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a client IP source; expected one of ",
            self.input
        )?;
        for (i, source) in ClientIpSource::ALL.iter().enumerate() {
            let sep = match i {
                0 => "",
                _ if i + 1 == ClientIpSource::ALL.len() => " or ",
                _ => ", ",
            };
            write!(f, "{sep}{source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseClientIpSourceError {}

/// The client address of a request under `source`, falling back to the TCP peer
/// address when the named header is absent or malformed. IPv4-mapped IPv6
/// addresses are folded to IPv4 so one client has one identity.
///
/// This runs on every request: a static header name, the value's bytes, and a
/// plain IPv4 parser before the standard one; no allocation.
pub(crate) fn client_ip(source: ClientIpSource, req: &Parts) -> Option<IpAddr> {
    let headers = &req.headers;
    let from_header = match source {
        ClientIpSource::ConnectInfo => None,
        ClientIpSource::RightmostXForwardedFor => last_value(headers, &X_FORWARDED_FOR)
            .and_then(|v| parse_ip(v.rsplit(|&b| b == b',').next().unwrap_or(v))),
        ClientIpSource::XRealIp => single_value(headers, &X_REAL_IP).and_then(parse_ip),
        ClientIpSource::CfConnectingIp => {
            single_value(headers, &CF_CONNECTING_IP).and_then(parse_ip)
        }
        ClientIpSource::TrueClientIp => single_value(headers, &TRUE_CLIENT_IP).and_then(parse_ip),
        ClientIpSource::FlyClientIp => single_value(headers, &FLY_CLIENT_IP).and_then(parse_ip),
        ClientIpSource::XEnvoyExternalAddress => {
            single_value(headers, &X_ENVOY_EXTERNAL_ADDRESS).and_then(parse_ip)
        }
        ClientIpSource::RightmostForwarded => forwarded::rightmost_forwarded_for(headers),
        ClientIpSource::CloudFrontViewerAddress => {
            last_value(headers, &CLOUDFRONT_VIEWER_ADDRESS).and_then(parse_ip_and_port)
        }
    };
    from_header
        .or_else(|| {
            req.extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ci| ci.0.ip())
        })
        .map(|ip| ip.to_canonical())
}

/// The address a visitor is counted by: IPv6 addresses cut to their first
/// `v6_prefix` bits (the network one host is usually given), IPv4 whole.
pub(crate) fn group_ip(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const CF_CONNECTING_IP: HeaderName = HeaderName::from_static("cf-connecting-ip");
const TRUE_CLIENT_IP: HeaderName = HeaderName::from_static("true-client-ip");
const FLY_CLIENT_IP: HeaderName = HeaderName::from_static("fly-client-ip");
const X_ENVOY_EXTERNAL_ADDRESS: HeaderName = HeaderName::from_static("x-envoy-external-address");
const CLOUDFRONT_VIEWER_ADDRESS: HeaderName = HeaderName::from_static("cloudfront-viewer-address");

/// The value of the last `name` header: the one the nearest proxy wrote.
fn last_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .map(HeaderValue::as_bytes)
}

/// The value of a header that must occur once: repeated, it is ambiguous (a
/// client may have sent one of its own), so none is trusted.
fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a [u8]> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => Some(v.as_bytes()),
        _ => None,
    }
}

/// An IP address, with surrounding ASCII whitespace, in the standard syntax.
/// Dotted IPv4 takes a plain loop; everything else goes to the standard parser,
/// so what is accepted is exactly what `IpAddr::from_str` accepts.
pub(crate) fn parse_ip(bytes: &[u8]) -> Option<IpAddr> {
    let bytes = bytes.trim_ascii();
    if let Some(v4) = parse_ipv4(bytes) {
        return Some(IpAddr::V4(v4));
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// `address:port` as CloudFront writes it: the port after the last colon, 1 to
/// 5 digits, IPv6 addresses unbracketed (`2001:db8::1:443`), or bracketed should
/// that change (`[2001:db8::1]:443`).
fn parse_ip_and_port(bytes: &[u8]) -> Option<IpAddr> {
    let bytes = bytes.trim_ascii();
    let colon = bytes.iter().rposition(|&b| b == b':')?;
    let (ip, port) = (&bytes[..colon], &bytes[colon + 1..]);
    if !(1..=5).contains(&port.len()) || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    match ip.strip_prefix(b"[").and_then(|ip| ip.strip_suffix(b"]")) {
        Some(v6) => parse_ip(v6).filter(IpAddr::is_ipv6),
        None => parse_ip(ip),
    }
}

/// Four decimal octets, 0 to 255, without leading zeros (as the standard parser
/// demands); `None` for anything else.
fn parse_ipv4(bytes: &[u8]) -> Option<Ipv4Addr> {
    if !(7..=15).contains(&bytes.len()) {
        return None;
    }
    let (mut addr, mut parts, mut i) = (0u32, 0, 0);
    loop {
        let start = i;
        let mut octet = 0u32;
        while i < bytes.len() && i - start < 3 && bytes[i].is_ascii_digit() {
            octet = octet * 10 + u32::from(bytes[i] - b'0');
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || octet > 255 || (digits > 1 && bytes[start] == b'0') {
            return None;
        }
        addr = addr << 8 | octet;
        parts += 1;
        if parts == 4 {
            return (i == bytes.len()).then(|| Ipv4Addr::from(addr));
        }
        if bytes.get(i) != Some(&b'.') {
            return None;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast parser accepts exactly what the standard one does, with the same
    /// value, on the tricky cases and on a large generated set.
    #[test]
    fn parse_ip_agrees_with_the_standard_parser() {
        let mut cases: Vec<String> = [
            "",
            " ",
            ".",
            "1.2.3.4",
            " 1.2.3.4\t",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "01.2.3.4",
            "1.2.3.00",
            "1.2.3.0",
            "00.0.0.0",
            "1.2.3.4 ",
            "1.2.3.4,",
            "1.2.3.-4",
            "+1.2.3.4",
            "1.2.3.4:80",
            "0x1.2.3.4",
            "1000.1.1.1",
            "1.2.3.999",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::1",
            "[::1]",
            "fe80::1%eth0",
            "1.2.3.4\u{0}",
            "\u{e9}1.2.3.4",
            "unknown",
            "1.2.3.4/24",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every string of up to 6 characters over a small alphabet.
        let alphabet = ['0', '1', '2', '5', '9', '.', ':', 'a', ' '];
        let mut frontier = vec![String::new()];
        for _ in 0..6 {
            let mut next = Vec::new();
            for s in &frontier {
                for c in alphabet {
                    next.push(format!("{s}{c}"));
                }
            }
            cases.extend(next.iter().cloned());
            frontier = next;
        }
        // Octets around the edges, in every position.
        for a in [
            "0", "00", "1", "01", "9", "10", "99", "100", "199", "249", "250", "255", "256", "300",
            "999", "1000",
        ] {
            for b in ["0", "255", "256", "07"] {
                cases.push(format!("{a}.{b}.1.2"));
                cases.push(format!("1.{b}.{a}.2"));
                cases.push(format!("1.2.{b}.{a}"));
            }
        }
        // Dotted quads (and near misses) of edge pieces, in every combination.
        let pieces = [
            "", "0", "00", "1", "01", "9", "10", "99", "255", "256", "1000", "a",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        cases.push(format!("{a}.{b}.{c}.{d}"));
                    }
                }
            }
        }
        for case in &cases {
            let ours = parse_ip(case.as_bytes());
            let std = case.trim_ascii().parse::<IpAddr>().ok();
            assert_eq!(ours, std, "{case:?}");
        }
    }

    /// Every variant is in `ALL` (the match fails to compile when one is
    /// added, until it is listed), and each parses from its name.
    #[test]
    fn every_source_parses_from_its_name() {
        fn position(source: ClientIpSource) -> usize {
            match source {
                ClientIpSource::ConnectInfo => 0,
                ClientIpSource::RightmostXForwardedFor => 1,
                ClientIpSource::XRealIp => 2,
                ClientIpSource::CfConnectingIp => 3,
                ClientIpSource::TrueClientIp => 4,
                ClientIpSource::FlyClientIp => 5,
                ClientIpSource::XEnvoyExternalAddress => 6,
                ClientIpSource::RightmostForwarded => 7,
                ClientIpSource::CloudFrontViewerAddress => 8,
            }
        }
        for (i, source) in ClientIpSource::ALL.into_iter().enumerate() {
            assert_eq!(position(source), i);
            assert_eq!(source.to_string().parse(), Ok(source));
            assert_eq!(format!("{source:?}"), source.to_string());
        }
        assert_eq!(ClientIpSource::default(), ClientIpSource::ConnectInfo);
        for bad in [
            "",
            "x-forwarded-for",
            "xrealip",
            " XRealIp",
            "XRealIp ",
            "Other",
        ] {
            let err = bad.parse::<ClientIpSource>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("{bad:?} is not")), "{err}");
            assert!(
                err.ends_with(
                    "expected one of ConnectInfo, RightmostXForwardedFor, XRealIp, \
                     CfConnectingIp, TrueClientIp, FlyClientIp, XEnvoyExternalAddress, \
                     RightmostForwarded or CloudFrontViewerAddress"
                ),
                "{err}"
            );
        }
    }

    /// Each source reads its header, and falls back to the peer when the header
    /// is absent, repeated (single-valued ones) or malformed.
    #[test]
    fn each_source_reads_its_header() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let parts = |headers: &[(&str, &str)]| {
            let mut req = http::Request::new(());
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(SocketAddr::new(peer, 4711)));
            for (name, value) in headers {
                req.headers_mut().append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            req.into_parts().0
        };
        use ClientIpSource::*;
        type Case<'a> = (ClientIpSource, &'a [(&'a str, &'a str)], Option<IpAddr>);
        let cases: &[Case] = &[
            (ConnectInfo, &[("x-real-ip", "192.0.2.1")], Some(peer)),
            (
                RightmostXForwardedFor,
                &[("x-forwarded-for", "6.6.6.6, 192.0.2.1")],
                ip("192.0.2.1"),
            ),
            (
                RightmostXForwardedFor,
                &[("x-forwarded-for", "192.0.2.1, bogus")],
                Some(peer),
            ),
            (XRealIp, &[("x-real-ip", " 192.0.2.1 ")], ip("192.0.2.1")),
            (
                XRealIp,
                &[("x-real-ip", "192.0.2.1"), ("x-real-ip", "192.0.2.2")],
                Some(peer),
            ),
            (XRealIp, &[], Some(peer)),
            (
                CfConnectingIp,
                &[("cf-connecting-ip", "2001:db8::1")],
                ip("2001:db8::1"),
            ),
            (
                TrueClientIp,
                &[("true-client-ip", "::ffff:192.0.2.1")],
                ip("192.0.2.1"),
            ),
            (
                FlyClientIp,
                &[("fly-client-ip", "192.0.2.1")],
                ip("192.0.2.1"),
            ),
            (FlyClientIp, &[("fly-client-ip", "unknown")], Some(peer)),
            (
                XEnvoyExternalAddress,
                &[("x-envoy-external-address", "192.0.2.1")],
                ip("192.0.2.1"),
            ),
            (
                RightmostForwarded,
                &[("forwarded", r#"for=6.6.6.6, for="[2001:db8::1]:443""#)],
                ip("2001:db8::1"),
            ),
            (
                RightmostForwarded,
                &[("forwarded", "for=_hidden")],
                Some(peer),
            ),
            (
                CloudFrontViewerAddress,
                &[("cloudfront-viewer-address", "192.0.2.1:46532")],
                ip("192.0.2.1"),
            ),
            (
                CloudFrontViewerAddress,
                &[("cloudfront-viewer-address", "2001:db8::1:46532")],
                ip("2001:db8::1"),
            ),
            (
                CloudFrontViewerAddress,
                &[("cloudfront-viewer-address", "[2001:db8::1]:46532")],
                ip("2001:db8::1"),
            ),
            (
                CloudFrontViewerAddress,
                &[("cloudfront-viewer-address", "192.0.2.1")],
                Some(peer),
            ),
            (
                CloudFrontViewerAddress,
                &[("cloudfront-viewer-address", "192.0.2.1:")],
                Some(peer),
            ),
            (
                CloudFrontViewerAddress,
                &[("cloudfront-viewer-address", "192.0.2.1:http")],
                Some(peer),
            ),
            (
                CloudFrontViewerAddress,
                &[("cloudfront-viewer-address", "[192.0.2.1]:80")],
                Some(peer),
            ),
        ];
        for (source, headers, want) in cases {
            assert_eq!(
                client_ip(*source, &parts(headers)),
                *want,
                "{source} {headers:?}"
            );
        }
        // No header, no peer: unidentified.
        let bare = http::Request::new(()).into_parts().0;
        assert_eq!(client_ip(ClientIpSource::ConnectInfo, &bare), None);
    }

    #[test]
    fn ipv6_grouped_by_prefix_ipv4_whole() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = group_ip(ip("2001:db8:1:2:aaaa::1"), 64);
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_eq!(group_ip(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 64), a);
        assert_ne!(group_ip(ip("2001:db8:1:3::1"), 64), a);
        assert_eq!(group_ip(ip("2001:db8:1:2::1"), 128), ip("2001:db8:1:2::1"));
        assert_eq!(group_ip(ip("2001:db8:1:2::1"), 48), ip("2001:db8:1::"));
        assert_eq!(group_ip(ip("2001:db8::1"), 1), ip("::"));
        assert_eq!(group_ip(ip("203.0.113.7"), 64), ip("203.0.113.7"));
    }

    /// Look-alike names: each would show in `/online` as another name, as a
    /// blank, or break the line; all are refused. Ordinary names, with inner
    /// spaces, accents and scripts of every kind, pass.
    #[test]
    fn names_that_lie_are_refused() {
        let refused = [
            "alice\u{200B}",    // zero-width space
            "al\u{200D}ice",    // zero-width joiner
            "\u{202E}ecila",    // right-to-left override
            "alice\u{2066}",    // left-to-right isolate
            "ali\u{00AD}ce",    // soft hyphen
            "alice\u{FEFF}",    // byte-order mark
            "alice\u{2028}bob", // line separator
            "alice\u{2029}",    // paragraph separator
            "\u{3164}",         // Hangul filler: renders blank
            "\u{115F}\u{1160}", // Hangul choseong and jungseong fillers
            "\u{FFA0}",         // halfwidth Hangul filler
            "\u{2800}",         // Braille blank
            "alice\u{FE0F}",    // variation selector
            "ali\u{034F}ce",    // combining grapheme joiner
            "alice\u{E0041}",   // tag character
            "alice\u{180E}",    // Mongolian vowel separator
            " alice",
            "alice ",
            "alice\u{00A0}", // trailing no-break space
            "\u{3000}",      // ideographic space only
            "tab\there",
            "line\nbreak",
            "",
        ];
        for name in refused {
            assert!(!User::new(name).is_valid(), "{name:?} accepted");
        }
        for name in [
            "alice",
            "Alice Smith",
            "José",
            "Zoë",
            "小明",
            "محمد",
            "Дмитрий",
            "ひらがな",
            "o'brien-2",
            "a",
        ] {
            assert!(User::new(name).is_valid(), "{name:?} refused");
        }
    }
}
