//! The `axum-login` adapter (feature `axum-login`; CI runs this with
//! `cargo test --all-features --test axum_login`).
#![cfg(feature = "axum-login")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum_login::{AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend, UserId};
use axum_whos_online::{AuthSessionUser, User};
use common::{Site, Stack, request_from};
use serde::Deserialize;
use tower::ServiceExt;
use tower_sessions::{MemoryStore, SessionManagerLayer};

#[derive(Clone, Debug)]
struct Account {
    id: u64,
    name: String,
    hidden: bool,
}

impl AuthUser for Account {
    type Id = u64;
    fn id(&self) -> u64 {
        self.id
    }
    fn session_auth_hash(&self) -> &[u8] {
        self.name.as_bytes()
    }
}

#[derive(Clone)]
struct Accounts(Arc<HashMap<String, Account>>);

#[derive(Clone, Deserialize)]
struct Login {
    name: String,
}

impl AuthnBackend for Accounts {
    type User = Account;
    type Credentials = Login;
    type Error = std::convert::Infallible;

    async fn authenticate(&self, c: Login) -> Result<Option<Account>, Self::Error> {
        Ok(self.0.get(&c.name).cloned())
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<Account>, Self::Error> {
        Ok(self.0.values().find(|a| a.id == *id).cloned())
    }
}

async fn login(mut auth: AuthSession<Accounts>, Form(c): Form<Login>) -> impl IntoResponse {
    match auth.authenticate(c).await {
        Ok(Some(a)) if auth.login(&a).await.is_ok() => StatusCode::OK,
        _ => StatusCode::UNAUTHORIZED,
    }
}

async fn users_come_from_the_auth_session(stack: Stack) {
    let accounts = Accounts(Arc::new(
        [("alice", 1, false), ("ghost", 2, true)]
            .into_iter()
            .map(|(n, id, hidden)| {
                (
                    n.to_owned(),
                    Account {
                        id,
                        name: n.to_owned(),
                        hidden,
                    },
                )
            })
            .collect(),
    ));
    let site = Site::with(stack, |b| {
        b.identify_users(AuthSessionUser::<Accounts, _>::new(|a: &Account| {
            Some(User::new(&a.name).with_hidden(a.hidden))
        }))
    })
    .await;
    let sessions = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
    let app = Router::new()
        .route("/", get(|| async { "hi" }))
        .route("/login", post(login))
        .layer(site.whos.layer())
        .layer(AuthManagerLayerBuilder::new(accounts, sessions).build());

    let mut cookies = Vec::new();
    for (i, name) in ["alice", "ghost"].iter().enumerate() {
        let mut req = request_from(&format!("10.0.0.{i}"), "/login");
        *req.method_mut() = http::Method::POST;
        req.headers_mut().insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        *req.body_mut() = format!("name={name}").into();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let cookie = res.headers()["set-cookie"].to_str().unwrap();
        cookies.push(cookie.split(';').next().unwrap().to_owned());
    }
    site.settle().await;
    // The login requests were read before the handler logged in: visitors.
    assert_eq!(site.whos.online(10).await.unwrap().user_count, 0);

    site.clock.advance_secs(1000); // leave the window
    for (i, cookie) in cookies.iter().enumerate() {
        let mut req = request_from(&format!("10.0.1.{i}"), "/");
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);
    }
    site.settle().await;
    let online = site.whos.online(10).await.unwrap();
    assert_eq!(online.users, ["alice"]);
    assert_eq!((online.user_count, online.visitor_count), (2, 0));
}

on_both_stacks!(users_come_from_the_auth_session);
