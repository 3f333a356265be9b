//! whos-online with `axum-login`: users come from the `AuthSession`.
//!
//! ```text
//! cargo run --example axum_login --features axum-login
//! curl -c jar -d 'username=alice&password=alice' http://127.0.0.1:3001/login
//! curl -b jar http://127.0.0.1:3001/ && curl http://127.0.0.1:3001/online
//! ```
//! Demo accounts: alice/alice, bob/bob (bob is hidden: counted, never listed).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum_login::{AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend, UserId};
use axum_whos_online::{AuthSessionUser, User, WhosOnline};
use serde::Deserialize;
use tower_sessions::{MemoryStore, SessionManagerLayer};

#[derive(Clone, Debug)]
struct Account {
    id: u64,
    username: String,
    password: String,
    hidden: bool,
}

impl AuthUser for Account {
    type Id = u64;

    fn id(&self) -> u64 {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        // A real app uses the password hash, so that changing it ends sessions.
        self.password.as_bytes()
    }
}

#[derive(Clone)]
struct Accounts(Arc<HashMap<String, Account>>);

#[derive(Clone, Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

impl AuthnBackend for Accounts {
    type User = Account;
    type Credentials = Credentials;
    type Error = std::convert::Infallible;

    async fn authenticate(&self, c: Credentials) -> Result<Option<Account>, Self::Error> {
        // Demo only: plain-text comparison. Use a password hash in a real app.
        Ok(self
            .0
            .get(&c.username)
            .filter(|a| a.password == c.password)
            .cloned())
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<Account>, Self::Error> {
        Ok(self.0.values().find(|a| a.id == *id).cloned())
    }
}

async fn login(mut auth: AuthSession<Accounts>, Form(c): Form<Credentials>) -> impl IntoResponse {
    match auth.authenticate(c).await {
        Ok(Some(account)) if auth.login(&account).await.is_ok() => {
            Redirect::to("/").into_response()
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn index(auth: AuthSession<Accounts>) -> String {
    match auth.user {
        Some(a) => format!("hello, {}\n", a.username),
        None => "hello, guest\n".to_owned(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let accounts = Accounts(Arc::new(
        [("alice", 1, false), ("bob", 2, true)]
            .into_iter()
            .map(|(name, id, hidden)| {
                let account = Account {
                    id,
                    username: name.into(),
                    password: name.into(),
                    hidden,
                };
                (name.to_owned(), account)
            })
            .collect(),
    ));

    let whos = WhosOnline::builder()
        .identify_users(AuthSessionUser::<Accounts, _>::new(|a: &Account| {
            Some(User::new(&a.username).with_hidden(a.hidden))
        }))
        .build()?;

    let sessions = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
    let app = Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .merge(whos.router())
        .layer(whos.layer()) // inside the auth layer, which puts the AuthSession in place
        .layer(AuthManagerLayerBuilder::new(accounts, sessions).build());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on http://{}", listener.local_addr()?);
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(whos.shutdown_signal()); // Ctrl-C or SIGTERM; ends event streams
    whos.graceful(server, std::time::Duration::from_secs(10))
        .await?;
    whos.shutdown().await?; // writes every queued report before exit
    Ok(())
}
