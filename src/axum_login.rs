//! The `axum-login` adapter (feature `axum-login`): the user comes from the
//! request's [`AuthSession`].

use std::marker::PhantomData;

use axum_login::{AuthSession, AuthnBackend};
use http::request::Parts;

use crate::identity::{IdentifyUser, Identity, User};

/// Reads the logged-in user from an `axum-login` [`AuthSession`], naming it with
/// a function of your user type (return `None` to count the request as a visitor,
/// or [`User::hidden`] for users who chose to be invisible).
///
/// The [`WhosOnlineLayer`](crate::WhosOnlineLayer) must sit inside the
/// `AuthManagerLayer`. `axum-login` 0.18 and this crate share `tower-sessions`
/// 0.14. The session's user is read as the request arrives, so the request that
/// logs in still counts as a visitor, and the next one as the user.
///
/// ```ignore
/// let whos = WhosOnline::builder()
///     .identify_users(AuthSessionUser::<MyBackend, _>::new(|u: &MyUser| Some(User::new(&u.username))))
///     .build()?;
/// ```
pub struct AuthSessionUser<B, F> {
    name: F,
    _backend: PhantomData<fn() -> B>,
}

impl<B, F> std::fmt::Debug for AuthSessionUser<B, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthSessionUser")
    }
}

impl<B, F> AuthSessionUser<B, F>
where
    B: AuthnBackend + 'static,
    F: Fn(&B::User) -> Option<User> + Send + Sync + 'static,
{
    /// Names users with `name`.
    pub fn new(name: F) -> Self {
        Self {
            name,
            _backend: PhantomData,
        }
    }
}

impl<B, F> IdentifyUser for AuthSessionUser<B, F>
where
    B: AuthnBackend + 'static,
    F: Fn(&B::User) -> Option<User> + Send + Sync + 'static,
{
    fn identify(&self, req: &Parts) -> Identity {
        req.extensions
            .get::<AuthSession<B>>()
            .and_then(|session| session.user.as_ref())
            .and_then(&self.name)
            .into()
    }
}
