//! The `tower-sessions` adapter: the user name is read from the session.

use std::hash::BuildHasher;
use std::sync::Arc;

use http::request::Parts;
use tower_sessions::Session;

use crate::identity::{IdentifyUser, Identity, SessionKey, User};

/// Reads the logged-in user's name from a [`tower_sessions::Session`], under a
/// key of your choice. Requests without a session, or whose session has no string
/// under the key, are visitors.
///
/// Reading the session loads it from the store, once the response is ready, even
/// on routes that never touch it. The layer remembers the name found for a
/// session id for one [`resolution`](crate::Builder::resolution) (keyed by a
/// hash of the id, see [`IdentifyUser::session_key`]), so one client costs at
/// most one load per resolution. A handler that ends or replaces the session
/// ([`Session::flush`], [`Session::cycle_id`]) makes it forgotten at once; a
/// user who logs out by only removing the name, keeping the session, may be
/// counted as the user until the resolution has passed. Cheaper still, if
/// an auth layer already loaded the user into a request extension, is a hook
/// that reads it at once ([`identify_now`](crate::identify_now), or
/// `AuthSessionUser` with the `axum-login` feature): no load at all.
///
/// The [`WhosOnlineLayer`](crate::WhosOnlineLayer) must sit *inside* the
/// `SessionManagerLayer` (added with `.layer()` before it), so the session is there.
///
/// ```
/// use axum_whos_online::{SessionUser, WhosOnline};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> axum_whos_online::Result<()> {
/// let whos = WhosOnline::builder()
///     .identify_users(SessionUser::new("username"))
///     .build()?;
/// # whos.shutdown().await?; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SessionUser {
    key: Arc<str>,
    hidden_key: Option<Arc<str>>,
    /// Keys the hash of session ids given to the layer (random per adapter).
    ids: std::collections::hash_map::RandomState,
}

impl SessionUser {
    /// Reads the user name stored under `key`.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self {
            key: key.into(),
            hidden_key: None,
            ids: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Also reads a boolean under `key`: when it is `true`, the user is
    /// [hidden](User::hidden) (counted, never listed).
    pub fn with_hidden_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.hidden_key = Some(key.into());
        self
    }
}

impl IdentifyUser for SessionUser {
    /// A keyed hash (SipHash, random key) of the session id from the cookie:
    /// a session seen within the resolution is not loaded again (see
    /// [`IdentifyUser::session_key`]). Requests without a session cookie have none.
    fn session_key(&self, req: &Parts) -> Option<SessionKey> {
        let session = req.extensions.get::<Session>()?.clone();
        let id = session.id()?;
        let ids = self.ids.clone();
        Some(
            SessionKey::new(self.ids.hash_one(id.0))
                .rechecked_by(move || session.id().map(|id| ids.hash_one(id.0))),
        )
    }

    fn identify(&self, req: &Parts) -> Identity {
        let Some(session) = req.extensions.get::<Session>().cloned() else {
            return Identity::Anonymous;
        };
        let key = Arc::clone(&self.key);
        let hidden_key = self.hidden_key.clone();
        Identity::Deferred(Box::pin(async move {
            let name = match session.get::<String>(&key).await {
                Ok(name) => name?,
                Err(e) => {
                    tracing::debug!(error = %e, "whos-online: session value unreadable; counting a visitor");
                    return None;
                }
            };
            let hidden = match hidden_key {
                Some(k) => session
                    .get::<bool>(&k)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(false),
                None => false,
            };
            Some(User::new(name).with_hidden(hidden))
        }))
    }
}
