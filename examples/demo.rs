//! The embedded demo: a tiny site with a forum-style "who's online" footer.
//!
//! ```text
//! cargo run --example demo          # then open http://127.0.0.1:3000
//! ```
//!
//! Log in under any name in one browser, open the page in another (or a private
//! window) to be a visitor, and watch the footer, `GET /online` and `GET /stats`.
//! The footer is rendered from the instance's view (no store call per page) and
//! then updates itself live from `GET /online/events`: no reload, no polling.
//!
//! Environment (all optional):
//!
//! | variable                  | default          | meaning                                   |
//! |---------------------------|------------------|-------------------------------------------|
//! | `BIND`                    | `127.0.0.1:3000` | address to listen on                      |
//! | `REDIS_URL`               | unset            | presence in Redis; unset: in memory       |
//! | `DATABASE_URL`            | unset            | record in Postgres (migrated at start)    |
//! | `WHOS_ONLINE_WINDOW_SECS` | `900`            | how long a member counts as online        |
//! | `WHOS_ONLINE_TICK_SECS`   | `60`             | how often the record is checked           |
//! | `WHOS_ONLINE_PREFIX`      | `whos_online`    | Redis key prefix                          |
//! | `WHOS_ONLINE_CLIENT_IP_SOURCE` | unset (the TCP peer) | a proxy header to trust, e.g. `RightmostXForwardedFor` |
//! | `WHOS_ONLINE_VISITOR_SECRET` | unset | secret for visitor pseudonyms; set it whenever Redis is used |
//! | `RUST_LOG`                | `info`           | log filter                                |
//!
//! With `--features prometheus` the demo also serves the crate's metrics at
//! `GET /metrics`, in the Prometheus text format.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_whos_online::{ClientIpSource, History, SessionUser, View, WhosOnline};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::postgres::PgPoolOptions;
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

/// The session key holding the logged-in user's name.
pub const USERNAME_KEY: &str = "username";
/// Longest user name the demo accepts, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Most names listed in the footer; the count is always complete.
const FOOTER_NAMES: usize = 100;

/// The demo's settings, normally from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// Address to listen on (`BIND`).
    pub bind: String,
    /// Redis for presence (`REDIS_URL`); `None`: in memory.
    pub redis_url: Option<String>,
    /// Postgres for the record (`DATABASE_URL`); `None`: in memory.
    pub database_url: Option<String>,
    /// How long a member counts as online (`WHOS_ONLINE_WINDOW_SECS`).
    pub window: Duration,
    /// How often the ticker runs (`WHOS_ONLINE_TICK_SECS`).
    pub tick_interval: Duration,
    /// Redis key prefix (`WHOS_ONLINE_PREFIX`).
    pub prefix: String,
    /// Where visitors' addresses come from (`WHOS_ONLINE_CLIENT_IP_SOURCE`, a
    /// [`ClientIpSource`] name such as `RightmostXForwardedFor`; unset: the TCP
    /// peer). Name a header only behind a proxy that sets it.
    pub client_ip_source: ClientIpSource,
    /// The secret visitor pseudonyms are keyed with (`WHOS_ONLINE_VISITOR_SECRET`);
    /// unset: a random key per day, kept in Redis when Redis is used (a warning
    /// at start says what that exposes).
    pub visitor_secret: Option<String>,
}

impl Default for DemoConfig {
    /// Everything in memory, on `127.0.0.1:3000`, with the library's defaults.
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:3000".to_owned(),
            redis_url: None,
            database_url: None,
            window: axum_whos_online::DEFAULT_WINDOW,
            tick_interval: axum_whos_online::DEFAULT_TICK_INTERVAL,
            prefix: axum_whos_online::DEFAULT_PREFIX.to_owned(),
            client_ip_source: ClientIpSource::ConnectInfo,
            visitor_secret: None,
        }
    }
}

impl DemoConfig {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (a variable's value, or `None` when
    /// unset). Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let secs = |name: &str, default: Duration, max: u64| -> Result<Duration, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
                    _ => Err(format!(
                        "{name} must be a whole number of seconds from 1 to {max}, not {v:?}"
                    )),
                },
            }
        };
        let defaults = Self::default();
        Ok(Self {
            bind: var("BIND").unwrap_or(defaults.bind),
            redis_url: var("REDIS_URL"),
            database_url: var("DATABASE_URL"),
            window: secs("WHOS_ONLINE_WINDOW_SECS", defaults.window, 366 * 24 * 3600)?,
            tick_interval: secs("WHOS_ONLINE_TICK_SECS", defaults.tick_interval, 24 * 3600)?,
            prefix: var("WHOS_ONLINE_PREFIX").unwrap_or(defaults.prefix),
            client_ip_source: match var("WHOS_ONLINE_CLIENT_IP_SOURCE") {
                None => defaults.client_ip_source,
                // The error lists the valid names.
                Some(v) => v
                    .parse()
                    .map_err(|e| format!("WHOS_ONLINE_CLIENT_IP_SOURCE: {e}"))?,
            },
            visitor_secret: var("WHOS_ONLINE_VISITOR_SECRET"),
        })
    }
}

/// Builds the site: connects the configured stores (running the migrations when
/// Postgres is used), starts who's online, and returns the router with the handle.
pub async fn app(config: &DemoConfig) -> Result<(Router, WhosOnline), Box<dyn std::error::Error>> {
    #[cfg(feature = "prometheus")]
    prometheus::install();
    let mut builder = WhosOnline::builder()
        .identify_users(SessionUser::new(USERNAME_KEY))
        .window(config.window)
        .tick_interval(config.tick_interval)
        .prefix(&config.prefix)
        .client_ip_source(config.client_ip_source)
        .places(demo_place);
    if let Some(secret) = &config.visitor_secret {
        builder = builder.visitor_secret(secret.as_bytes());
    }
    #[cfg(feature = "prometheus")]
    {
        builder = builder.skip_path_prefix("/metrics"); // scrapes are not visitors
    }
    if let Some(url) = &config.redis_url {
        let pool = axum_whos_online::redis_pool(url).map_err(|e| format!("REDIS_URL: {e}"))?;
        builder = builder.redis(pool);
    }
    if let Some(url) = &config.database_url {
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| format!("DATABASE_URL: cannot connect to Postgres: {e}"))?;
        axum_whos_online::migrate(&pool)
            .await
            .map_err(|e| format!("DATABASE_URL: migrations failed: {e}"))?;
        builder = builder.postgres(pool);
    }
    let whos = builder
        .build()
        .map_err(|e| format!("WHOS_ONLINE_* settings: {e}"))?;
    tracing::info!(
        presence = if config.redis_url.is_some() {
            "redis"
        } else {
            "memory"
        },
        record = if config.database_url.is_some() {
            "postgres"
        } else {
            "memory"
        },
        window_secs = config.window.as_secs(),
        "whos-online started"
    );

    // Plain http on localhost, so the cookie cannot be `Secure`.
    let sessions = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
    let admin = whos
        .admin_router()
        .route_layer(axum::middleware::from_fn(admins_only));
    let routes = Router::new()
        .route("/", get(page))
        .route("/forum/{id}", get(forum))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .nest("/admin", admin);
    #[cfg(feature = "prometheus")]
    let routes = routes.route("/metrics", get(prometheus::metrics));
    let router = routes
        .merge(whos.router())
        .with_state(whos.clone())
        // The who's-online layer reads the session, so it goes inside the session layer.
        .layer(whos.layer())
        .layer(sessions);
    Ok((router, whos))
}

/// Where a request is: each forum by its path (`/forum/3`), other pages by
/// their route template (axum's `MatchedPath`). The JSON routes, the live
/// stream and the admin fragment move nobody: a page polling them stays where
/// it is.
pub fn demo_place(req: &axum::http::request::Parts) -> Option<String> {
    let path = req.uri.path();
    let quiet = ["/online", "/stats", "/openapi.json", "/admin", "/metrics"];
    if quiet
        .iter()
        .any(|q| path == *q || path.strip_prefix(q).is_some_and(|r| r.starts_with('/')))
    {
        return None;
    }
    let template = axum_whos_online::place_by_matched_path(req)?;
    if template == "/forum/{id}" {
        Some(path.to_owned())
    } else {
        Some(template)
    }
}

/// Lets only the logged-in user named `admin` through; anyone else gets a
/// JSON 403. How a host puts `admin_router()` behind its own authorisation.
async fn admins_only(
    session: Session,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let user = session.get::<String>(USERNAME_KEY).await.ok().flatten();
    if user.as_deref() == Some("admin") {
        next.run(req).await
    } else {
        (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({"error": "only the user named admin may see this"})),
        )
            .into_response()
    }
}

/// Longest forum id the demo serves, in bytes.
const MAX_FORUM_ID: usize = 32;

/// `GET /forum/{id}` (any id): a forum page saying who is browsing it, beside
/// the site-wide footer; both from the view.
async fn forum(
    State(whos): State<WhosOnline>,
    session: Session,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if id.len() > MAX_FORUM_ID || id.chars().any(char::is_control) {
        return message_page(StatusCode::NOT_FOUND, "No such forum.");
    }
    let user = session.get::<String>(USERNAME_KEY).await.ok().flatten();
    let view = whos.view();
    let place = format!("/forum/{id}");
    let mut body = format!(
        "<main>\n<h1>Forum {}</h1>\n<p id=\"browsing\">{}</p>\n\
         <p>Other forums: <a href=\"/forum/1\">1</a>, <a href=\"/forum/2\">2</a>, \
         <a href=\"/forum/3\">3</a>. <a href=\"/\">Home</a>.</p>\n",
        escape_html(&id),
        browsing_line(&view.online_in(&place, FOOTER_NAMES)),
    );
    if let Some(name) = &user {
        let _ = writeln!(
            body,
            "<p>Logged in as <strong>{}</strong>.</p>",
            escape_html(name)
        );
    }
    body.push_str("</main>\n");
    body.push_str(&render_footer(&view));
    body.push_str(LIVE_SCRIPT);
    let _ = writeln!(
        body,
        "<script>window.whosOnlinePlace = {};</script>",
        serde_json::to_string(&place)
            .unwrap_or_default()
            .replace('<', "\\u003c")
    );
    Html(layout(
        &format!("Forum {} - whos-online demo", escape_html(&id)),
        &body,
    ))
    .into_response()
}

/// "Browsing this forum: alice, bob and 3 guests", as phpBB words it.
fn browsing_line(here: &axum_whos_online::Online) -> String {
    let names: Vec<String> = here.users.iter().map(|n| escape_html(n)).collect();
    let mut line = String::from("Browsing this forum: ");
    if names.is_empty() && here.user_count == 0 {
        line.push_str("no users");
    } else if names.is_empty() {
        let _ = write!(line, "{} hidden users", here.user_count);
    } else {
        line.push_str(&user_list(&names, here.user_count));
    }
    let guests = here.visitor_count;
    let _ = write!(
        line,
        " and {guests} guest{}",
        if guests == 1 { "" } else { "s" }
    );
    if here.bot_count > 0 {
        let _ = write!(
            line,
            " ({} bot{})",
            here.bot_count,
            if here.bot_count == 1 { "" } else { "s" }
        );
    }
    line
}

/// `GET /`: the page with the who's-online footer, rendered from the view:
/// no Redis or Postgres call, whatever the traffic.
async fn page(State(whos): State<WhosOnline>, session: Session) -> Html<String> {
    let user = session.get::<String>(USERNAME_KEY).await.ok().flatten();
    let history = whos.history(30).ok();
    Html(render_page(user.as_deref(), &whos.view(), history.as_ref()))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    username: String,
}

/// `POST /login`: puts the name into the session and goes back to `/`.
async fn login(session: Session, form: Result<Form<LoginForm>, FormRejection>) -> Response {
    let Ok(Form(form)) = form else {
        return message_page(
            StatusCode::BAD_REQUEST,
            "Send a form with a username field.",
        );
    };
    let name = match validate_username(&form.username) {
        Ok(name) => name,
        Err(why) => return message_page(StatusCode::BAD_REQUEST, why),
    };
    if let Err(e) = session.insert(USERNAME_KEY, &name).await {
        tracing::error!(error = %e, "session not written");
        return message_page(StatusCode::INTERNAL_SERVER_ERROR, "Could not log you in.");
    }
    // A new session id on login, so an id planted before it is worthless.
    if let Err(e) = session.cycle_id().await {
        tracing::error!(error = %e, "session id not cycled");
        return message_page(StatusCode::INTERNAL_SERVER_ERROR, "Could not log you in.");
    }
    Redirect::to("/").into_response()
}

/// `POST /logout`: ends the session and goes back to `/`.
async fn logout(State(whos): State<WhosOnline>, session: Session) -> Response {
    let user = session.get::<String>(USERNAME_KEY).await.ok().flatten();
    if let Err(e) = session.flush().await {
        tracing::error!(error = %e, "session not ended");
        return message_page(StatusCode::INTERNAL_SERVER_ERROR, "Could not log you out.");
    }
    // Off the list at once, not when the window passes. A store that is down
    // only delays it: the removal is written with the next write.
    if let Some(name) = user
        && let Err(e) = whos.user_left(name).await
    {
        tracing::warn!(error = %e, "who's online: logout not written yet");
    }
    Redirect::to("/").into_response()
}

/// The name to log in as: trimmed, 1 to 32 characters, no control characters.
pub fn validate_username(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("Please enter a name.");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("That name is too long: 32 characters at most.");
    }
    if name.chars().any(char::is_control) {
        return Err("Names cannot contain control characters.");
    }
    Ok(name.to_owned())
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}\
footer{margin-top:2rem;padding-top:1rem;border-top:1px solid #ccc;font-size:.9rem;color:#444}\
footer p{margin:.3rem 0}input,button{font:inherit}code{background:#f3f3f3;padding:0 .2rem}\
figure{margin:1.5rem 0}svg{width:100%;height:auto}figcaption{font-size:.85rem;color:#444}\
.key{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .8rem;vertical-align:middle}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
}

fn message_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<main>\n<h1>Sorry</h1>\n<p>{}</p>\n<p><a href=\"/\">Back</a></p>\n</main>\n",
        escape_html(message)
    );
    (status, Html(layout("whos-online demo", &body))).into_response()
}

fn render_page(user: Option<&str>, view: &View, history: Option<&History>) -> String {
    let mut body = String::from("<main>\n<h1>whos-online demo</h1>\n");
    match user {
        Some(name) => {
            let _ = write!(
                body,
                "<p>Logged in as <strong>{}</strong>.</p>\n\
                 <form method=\"post\" action=\"/logout\"><button>Log out</button></form>\n",
                escape_html(name)
            );
        }
        None => {
            let _ = write!(
                body,
                "<p>You are a visitor. Log in under any name (no password):</p>\n\
                 <form method=\"post\" action=\"/login\">\n\
                 <input name=\"username\" maxlength=\"{MAX_NAME_CHARS}\" required autofocus \
                 aria-label=\"User name\" placeholder=\"name\">\n\
                 <button>Log in</button>\n</form>\n"
            );
        }
    }
    body.push_str(
        "<p>Forums: <a href=\"/forum/1\">1</a>, <a href=\"/forum/2\">2</a>, \
         <a href=\"/forum/3\">3</a> (each says who is browsing it). As the user \
         <code>admin</code>, <a href=\"/admin/online/detail\"><code>/admin/online/detail</code></a> \
         lists who is where.</p>\n",
    );
    body.push_str(
        "<p>Open this page in another browser to be counted as a visitor: the footer \
         updates by itself. The same data as JSON: <a href=\"/online\"><code>/online</code></a>, \
         <a href=\"/stats\"><code>/stats</code></a>, \
         <a href=\"/stats/history\"><code>/stats/history</code></a>, and live: \
         <a href=\"/online/events\"><code>/online/events</code></a>.</p>\n",
    );
    body.push_str(&render_history(history));
    body.push_str("</main>\n");
    body.push_str(&render_footer(view));
    body.push_str(LIVE_SCRIPT);
    layout("whos-online demo", &body)
}

/// Colours of the history chart: distinct visitors (bars), peak visitors and
/// peak users (lines).
const DISTINCT_COLOUR: &str = "#bcd6ef";
const VISITORS_COLOUR: &str = "#1f5fa8";
const USERS_COLOUR: &str = "#c0392b";

/// The last days as an inline SVG chart, drawn here from the history (no
/// script, nothing fetched): a bar per day for the distinct visitors, a line
/// each for the peaks of visitors and of users, on one scale. Each bar carries
/// its day and value, and a tooltip.
fn render_history(history: Option<&History>) -> String {
    let Some(history) = history.filter(|h| !h.days.is_empty()) else {
        return "<p id=\"history\">History: not read yet (it is read at each tick).</p>\n"
            .to_owned();
    };
    let days = &history.days;
    const W: f64 = 720.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = 8.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 28.0;
    let top = days
        .iter()
        .map(|d| d.distinct_visitors.max(d.max_visitors).max(d.max_users))
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_h = H - TOP - BOTTOM;
    let slot = (W - LEFT - RIGHT) / days.len() as f64;
    let y = |v: u64| TOP + plot_h - v as f64 / top as f64 * plot_h;
    let x_mid = |i: usize| LEFT + (i as f64 + 0.5) * slot;
    let mut svg = format!(
        "<figure id=\"history\">\n<svg viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-labelledby=\"history-title\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <title id=\"history-title\">The last {n} days: distinct visitors per day (bars), \
         most visitors and most users online at once (lines)</title>\n",
        n = days.len()
    );
    for (i, d) in days.iter().enumerate() {
        let v = d.distinct_visitors;
        let _ = writeln!(
            svg,
            "<rect class=\"distinct\" data-day=\"{day}\" data-value=\"{v}\" x=\"{x:.1}\" \
             y=\"{top:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{DISTINCT_COLOUR}\">\
             <title>{day}: {v} distinct visitors, most {mv} visitors and {mu} users at once</title>\
             </rect>",
            day = d.day,
            x = LEFT + i as f64 * slot + 1.0,
            top = y(v),
            w = (slot - 2.0).max(1.0),
            h = TOP + plot_h - y(v),
            mv = d.max_visitors,
            mu = d.max_users,
        );
    }
    for (class, colour, value) in [
        (
            "peak-visitors",
            VISITORS_COLOUR,
            (|d: &axum_whos_online::Day| d.max_visitors) as fn(&axum_whos_online::Day) -> u64,
        ),
        ("peak-users", USERS_COLOUR, |d| d.max_users),
    ] {
        let points: Vec<String> = days
            .iter()
            .enumerate()
            .map(|(i, d)| format!("{:.1},{:.1}", x_mid(i), y(value(d))))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline class=\"{class}\" points=\"{}\" fill=\"none\" stroke=\"{colour}\" \
             stroke-width=\"2\"/>",
            points.join(" ")
        );
    }
    let base = TOP + plot_h;
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#888\"/>\n\
         <text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{top}</text>\n\
         <text x=\"{}\" y=\"{base}\" font-size=\"12\" text-anchor=\"end\">0</text>\n\
         <text x=\"{LEFT}\" y=\"{}\" font-size=\"12\">{}</text>\n\
         <text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>\n</svg>\n",
        W - RIGHT,
        LEFT - 6.0,
        TOP + 10.0,
        LEFT - 6.0,
        H - 8.0,
        days[0].day,
        W - RIGHT,
        H - 8.0,
        days[days.len() - 1].day,
    );
    let _ = write!(
        svg,
        "<figcaption>The last {} days (UTC):\
         <span class=\"key\" style=\"background:{DISTINCT_COLOUR}\"></span>distinct visitors\
         <span class=\"key\" style=\"background:{VISITORS_COLOUR}\"></span>most visitors at once\
         <span class=\"key\" style=\"background:{USERS_COLOUR}\"></span>most users at once.\
         </figcaption>\n</figure>\n",
        days.len()
    );
    svg
}

/// The footer. Every value sits in an element with an id, so that the script
/// below can replace it when an event arrives.
fn render_footer(view: &View) -> String {
    let mut f = String::from("<footer>\n<h2>Who's online</h2>\n");
    let names: Vec<String> = view
        .online(FOOTER_NAMES)
        .users
        .iter()
        .map(|n| escape_html(n))
        .collect();
    let _ = write!(
        f,
        "<p>Users online: <span id=\"user-count\">{}</span> (<span id=\"user-list\">{}</span>)</p>\n\
         <p>Visitors online: <span id=\"visitor-count\">{}</span></p>\n\
         <p>Bots online: <span id=\"bot-count\">{}</span> (<span id=\"bot-list\">{}</span>)</p>\n",
        view.user_count(),
        user_list(&names, view.user_count()),
        view.visitor_count(),
        view.bot_count(),
        bot_list(view.bots()),
    );
    let record = view.record();
    let _ = write!(
        f,
        "<p id=\"record-users\">{}</p>\n<p id=\"record-visitors\">{}</p>\n",
        record_line("users", record.max_users, record.max_users_date),
        record_line("visitors", record.max_visitors, record.max_visitors_date)
    );
    let _ = write!(
        f,
        "<p><small>Counted over the last {}; <span id=\"as-of\">{}</span>. \
         <span id=\"live\">Live updates: connecting.</span></small></p>\n</footer>\n",
        describe_window(view.window()),
        as_of_line(view.as_of()),
    );
    f
}

/// The listed names (escaped), and how many more are online.
fn user_list(names: &[String], count: u64) -> String {
    let shown = names.len() as u64;
    let mut list = if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    };
    if count > shown && shown > 0 {
        let _ = write!(list, " and {} more", count - shown);
    }
    list
}

/// The bots' names (escaped; they come from the bot filter's table), or "none".
fn bot_list(bots: &[String]) -> String {
    if bots.is_empty() {
        return "none".to_owned();
    }
    let names: Vec<String> = bots.iter().map(|n| escape_html(n)).collect();
    names.join(", ")
}

fn as_of_line(as_of: Option<DateTime<Utc>>) -> String {
    match as_of {
        Some(t) => format!("as of {}", t.format("%H:%M:%S UTC")),
        None => "not counted yet".to_owned(),
    }
}

/// Keeps the footer current from `GET /online/events`, with the same wording
/// as the server's. Names go in as text, never as HTML.
const LIVE_SCRIPT: &str = r#"<script>
(function () {
  const $ = (id) => document.getElementById(id);
  const time = (s) => s ? s.slice(11, 19) + " UTC" : null;
  const day = (s) => s.slice(0, 10) + " " + s.slice(11, 16) + " UTC";
  const record = (what, n, date) => date
    ? "Most " + what + " ever online was " + n + " on " + day(date)
    : "Most " + what + " ever online: no record yet";
  const browsing = (h) => {
    let names = h.users.length ? h.users.join(", ")
      : h.user_count ? h.user_count + " hidden users" : "no users";
    if (h.user_count > h.users.length && h.users.length > 0) {
      names += " and " + (h.user_count - h.users.length) + " more";
    }
    let line = "Browsing this forum: " + names + " and " + h.visitor_count +
      " guest" + (h.visitor_count === 1 ? "" : "s");
    if (h.bot_count > 0) line += " (" + h.bot_count + " bot" + (h.bot_count === 1 ? "" : "s") + ")";
    return line;
  };
  const source = new EventSource("/online/events?limit=100");
  source.addEventListener("open", () => { $("live").textContent = "Live updates: on."; });
  source.addEventListener("error", () => { $("live").textContent = "Live updates: reconnecting."; });
  source.addEventListener("online", (e) => {
    const o = JSON.parse(e.data);
    $("user-count").textContent = o.user_count;
    let list = o.users.length ? o.users.join(", ") : "none";
    if (o.user_count > o.users.length && o.users.length > 0) {
      list += " and " + (o.user_count - o.users.length) + " more";
    }
    $("user-list").textContent = list;
    $("visitor-count").textContent = o.visitor_count;
    $("bot-count").textContent = o.bot_count;
    $("bot-list").textContent = o.bots.length ? o.bots.join(", ") : "none";
    $("as-of").textContent = o.as_of ? "as of " + time(o.as_of) : "not counted yet";
    if (window.whosOnlinePlace) {
      fetch("/online?limit=100&place=" + encodeURIComponent(window.whosOnlinePlace))
        .then((r) => r.json())
        .then((h) => { $("browsing").textContent = browsing(h); })
        .catch(() => {});
    }
  });
  source.addEventListener("stats", (e) => {
    const r = JSON.parse(e.data);
    $("record-users").textContent = record("users", r.max_users, r.max_users_date);
    $("record-visitors").textContent = record("visitors", r.max_visitors, r.max_visitors_date);
  });
})();
</script>
"#;

fn record_line(what: &str, count: u64, date: Option<DateTime<Utc>>) -> String {
    match date {
        Some(d) => format!(
            "Most {what} ever online was {count} on {}",
            d.format("%Y-%m-%d %H:%M UTC")
        ),
        None => format!("Most {what} ever online: no record yet"),
    }
}

fn describe_window(window: Duration) -> String {
    let secs = window.as_secs();
    match secs {
        60 => "minute".to_owned(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        1 => "second".to_owned(),
        s => format!("{s} seconds"),
    }
}

/// `GET /metrics` in the Prometheus text format (feature `prometheus`).
#[cfg(feature = "prometheus")]
mod prometheus {
    use std::sync::OnceLock;

    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

    /// The process-wide recorder, installed on first use (once per process, so
    /// tests that build the app many times share it).
    fn handle() -> Option<&'static PrometheusHandle> {
        static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
        HANDLE
            .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics is off");
                    None
                }
            })
            .as_ref()
    }

    /// Installs the recorder now, so metrics published before the first scrape count.
    pub(crate) fn install() {
        let _ = handle();
    }

    pub(crate) async fn metrics() -> Response {
        match handle() {
            Some(h) => {
                h.run_upkeep();
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    h.render(),
                )
                    .into_response()
            }
            None => (StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable\n").into_response(),
        }
    }
}

/// A start-up failure, shown as its plain message when `main` returns it.
struct Fatal(String);

impl std::fmt::Debug for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::fmt::Display> From<E> for Fatal {
    fn from(e: E) -> Self {
        Fatal(e.to_string())
    }
}

#[tokio::main]
async fn main() -> Result<(), Fatal> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let config = DemoConfig::from_env()?;
    let (router, whos) = app(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .map_err(|e| format!("BIND: cannot listen on {}: {e}", config.bind))?;
    let addr = listener.local_addr()?;
    println!("whos-online demo: open http://{addr}/  (Ctrl-C or SIGTERM to stop)");

    // Visitors are keyed by the TCP peer address; no proxy header is trusted.
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    // Ends the live event streams first: a graceful shutdown waits for them.
    .with_graceful_shutdown(whos.shutdown_signal());
    // And a browser that stopped reading its stream holds it at most 10 s.
    let served = whos.graceful(server, Duration::from_secs(10)).await;
    // Write every queued report before exit, even if serving failed.
    let shut = whos.shutdown().await;
    served?;
    shut?;
    tracing::info!("stopped");
    Ok(())
}
