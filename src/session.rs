//! The `tower-sessions` adapter: the user name is read from the session.

use std::sync::Arc;

use http::request::Parts;
use tower_sessions::Session;

use crate::identity::{IdentifyUser, Identity, User};

/// Reads the logged-in user's name from a [`tower_sessions::Session`], under a
/// key of your choice. Requests without a session, or whose session has no string
/// under the key, are visitors.
///
/// The [`WhosOnlineLayer`](crate::WhosOnlineLayer) must sit *inside* the
/// `SessionManagerLayer` (added with `.layer()` before it), so the session is there.
///
/// ```
/// use whos_online::{SessionUser, WhosOnline};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> whos_online::Result<()> {
/// let whos = WhosOnline::builder()
///     .identify_users(SessionUser::new("username"))
///     .build()?;
/// # whos.shutdown().await?; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SessionUser {
    key: Arc<str>,
    hidden_key: Option<Arc<str>>,
}

impl SessionUser {
    /// Reads the user name stored under `key`.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self {
            key: key.into(),
            hidden_key: None,
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
