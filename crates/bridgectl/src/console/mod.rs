//! `bridgectl console`: the pipeline in a browser. An axum server rendering HTML
//! (`pages`), fed by a collector that takes a snapshot every few seconds (`collect`) and
//! turns the last 15 minutes of them into the flow page (`flow`). Who may use it is
//! decided in `guard`; every asset is served from the binary.

mod collect;
mod deadletters;
mod devices;
mod flow;
pub mod guard;
mod pages;
mod snapshot;
mod svg;
pub mod thresholds;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Form, Query as UrlQuery, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock, watch};

use self::flow::FlowView;
use self::guard::{Hosts, Keys, SESSION_COOKIE};
use self::pages::Chrome;
use self::snapshot::Snapshot;
use self::thresholds::Thresholds;
use crate::common::Endpoints;
use crate::dlq::redrive::{RedriveArgs, RedriveReport};

#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    /// Address to serve on. Anything but loopback (0.0.0.0 included) needs --token.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Every request must carry it (a sign-in form sets a session cookie; scripts may
    /// send `Authorization: Bearer`). Required beyond loopback; at least 16 characters.
    #[arg(long, env = "CONSOLE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Allow redrives from the console (read-only without it).
    #[arg(long)]
    pub allow_redrive: bool,
    /// Another host name the console is reached by (a proxy's), for the Host and Origin
    /// checks. Repeatable.
    #[arg(long = "public-host")]
    pub public_hosts: Vec<String>,
    /// How often the flow is measured.
    #[arg(long, default_value = "5s", value_parser = crate::common::parse_duration)]
    pub interval: Duration,
    #[command(flatten)]
    pub thresholds: Thresholds,
    #[command(flatten)]
    pub at: Endpoints,
}

struct App {
    keys: Keys,
    hosts: Hosts,
    allow_redrive: bool,
    at: Endpoints,
    history: RwLock<VecDeque<Snapshot>>,
    view: watch::Receiver<Option<FlowView>>,
    /// One redrive at a time: two at once could both read the ledger before either
    /// records, and send a record twice.
    redriving: Mutex<()>,
}

pub async fn run(
    args: ConsoleArgs,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    guard::check_start(args.listen, args.token.as_deref())?;
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce)
        .map_err(|e| anyhow::anyhow!("no randomness for the CSRF token: {e}"))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    // With port 0 the port is only known now, and the Host check needs it.
    let bound = listener.local_addr()?;
    let (view_tx, view_rx) = watch::channel(None);
    let app = Arc::new(App {
        keys: Keys::new(args.token.as_deref(), nonce),
        hosts: Hosts::new(bound, &args.public_hosts),
        allow_redrive: args.allow_redrive,
        at: args.at.clone(),
        history: RwLock::new(VecDeque::new()),
        view: view_rx,
        redriving: Mutex::new(()),
    });
    tokio::spawn(measure(
        Arc::clone(&app),
        view_tx,
        args.interval,
        args.thresholds,
    ));
    // The one line a person (or a test) needs: where it is.
    println!(
        "console: http://{bound}/ ({})",
        if args.allow_redrive {
            "redrive enabled"
        } else {
            "read-only"
        }
    );
    axum::serve(listener, router(app))
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(flow_page))
        .route("/events", get(events))
        .route("/api/flow", get(flow_json))
        .route("/dead-letters", get(dead_letters_page))
        .route("/redrive", get(redrive_dry_run).post(redrive_confirmed))
        .route("/redrive/sqs", post(redrive_sqs))
        .route("/devices", get(devices_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), gate))
        .with_state(app)
}

async fn measure(
    app: Arc<App>,
    view: watch::Sender<Option<FlowView>>,
    interval: Duration,
    thresholds: Thresholds,
) {
    let mut collector = collect::Collector::new(app.at.clone()).await;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snap = collector.snapshot().await;
        let mut history = app.history.write().await;
        let keep_from = snap.at_ms - flow::CHART_MS - 60_000;
        history.push_back(snap);
        while history.front().is_some_and(|s| s.at_ms < keep_from) {
            history.pop_front();
        }
        let v = flow::build(history.make_contiguous(), &thresholds);
        drop(history);
        let _ = view.send(v);
    }
}

/// Host on every request; Origin on every state change; the session everywhere but
/// the sign-in page and the assets.
async fn gate(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if !app.hosts.host_ok(text(header::HOST)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This console does not answer to that Host name (DNS rebinding guard); use --public-host to add one.",
        );
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if changes && !app.hosts.origin_ok(text(header::ORIGIN)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "A state-changing request must come from the console's own pages (Origin check).",
        );
    }
    let path = req.uri().path();
    let open = path == "/login" || path.starts_with("/assets/");
    let bearer = text(header::AUTHORIZATION).and_then(|a| a.strip_prefix("Bearer "));
    if !open
        && !app
            .keys
            .admits(guard::cookie(text(header::COOKIE), SESSION_COOKIE), bearer)
    {
        let wants_html = !(path == "/events" || path.starts_with("/api/"));
        let body = if wants_html {
            pages::login(None).into_string()
        } else {
            "401: sign in (session cookie) or send Authorization: Bearer <token>".into()
        };
        return (StatusCode::UNAUTHORIZED, Html(body)).into_response();
    }
    next.run(req).await
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(pages::error_page(status.as_u16(), message).into_string()),
    )
        .into_response()
}

fn chrome<'a>(app: &'a App, active: &'static str) -> Chrome<'a> {
    Chrome {
        active,
        allow_redrive: app.allow_redrive,
        csrf: app.keys.csrf(),
        signed_in: app.keys.needs_login(),
    }
}

fn page(app: &App, active: &'static str, title: &str, body: maud::Markup) -> Html<String> {
    Html(pages::layout(title, &chrome(app, active), body).into_string())
}

async fn flow_page(State(app): State<Arc<App>>) -> Html<String> {
    let view = app.view.borrow().clone();
    page(&app, "flow", "Flow", pages::flow(view.as_ref()))
}

async fn flow_json(State(app): State<Arc<App>>) -> Response {
    axum::Json(app.view.borrow().clone()).into_response()
}

async fn events(State(app): State<Arc<App>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.view.clone();
    let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let html = pages::flow_boxes(rx.borrow_and_update().as_ref()).into_string();
        Some((Ok(Event::default().event("flow").data(html)), (rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn dead_letters_page(
    State(app): State<Arc<App>>,
    UrlQuery(q): UrlQuery<deadletters::Query>,
) -> Html<String> {
    if q.is_sqs() {
        let rows = crate::dlq::peek_sqs(&app.at, deadletters::DEFAULT_LIMIT)
            .await
            .map_err(|e| format!("{e:#}"));
        let body = pages::sqs_dead_letters(&q, &rows, app.allow_redrive, app.keys.csrf());
        return page(&app, "dead-letters", "Dead letters", body);
    }
    let rows = kafka_rows(&app, &q).await.map_err(|e| format!("{e:#}"));
    page(
        &app,
        "dead-letters",
        "Dead letters",
        pages::dead_letters(&q, &rows, app.allow_redrive),
    )
}

/// The newest matching records (up to the page's limit) and how many matched.
async fn kafka_rows(
    app: &App,
    q: &deadletters::Query,
) -> anyhow::Result<(Vec<deadletters::Row>, usize)> {
    let filter = q.filter(chrono::Utc::now()).map_err(anyhow::Error::msg)?;
    let all = crate::dlq::read_kafka_dlq(&app.at).await?;
    let mut matched: Vec<deadletters::Row> = all
        .iter()
        .map(crate::dlq::redrive::dead_letter)
        .filter(|d| filter.admits(d))
        .map(|d| deadletters::row(&d))
        .collect();
    matched.sort_by(|a, b| b.time.cmp(&a.time).then(b.offset.cmp(&a.offset)));
    let n = matched.len();
    matched.truncate(deadletters::DEFAULT_LIMIT);
    Ok((matched, n))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RedriveQuery {
    #[serde(flatten)]
    filter: deadletters::Query,
    /// PARTITION:OFFSET of one record.
    record: String,
}

impl RedriveQuery {
    fn args(&self, dry_run: bool, keep: &str) -> anyhow::Result<RedriveArgs> {
        let now = chrono::Utc::now();
        let f = self.filter.filter(now).map_err(anyhow::Error::msg)?;
        let record = match self.record.trim() {
            "" => None,
            r => {
                let (p, o) = r
                    .split_once(':')
                    .context("record: expected PARTITION:OFFSET")?;
                Some((
                    p.parse().context("record partition")?,
                    o.parse().context("record offset")?,
                ))
            }
        };
        Ok(RedriveArgs {
            dry_run,
            json: true,
            reason: f.reason,
            kind: f.kind,
            stage: f.stage,
            device: f.device,
            since: f.since_ms.and_then(chrono::DateTime::from_timestamp_millis),
            record,
            max_redrives: 3,
            keep_headers: keep
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect(),
            ..RedriveArgs::default()
        })
    }
}

async fn redrive_dry_run(
    State(app): State<Arc<App>>,
    uri: axum::http::Uri,
    UrlQuery(q): UrlQuery<RedriveQuery>,
) -> Response {
    if !app.allow_redrive {
        return refuse(
            StatusCode::FORBIDDEN,
            "Redrive is off: start the console with --allow-redrive.",
        );
    }
    let report = redrive(&app, &q, true, "").await;
    let body = pages::redrive_plan(
        uri.query().unwrap_or_default(),
        &report,
        "",
        app.keys.csrf(),
    );
    page(&app, "dead-letters", "Redrive", body).into_response()
}

#[derive(Debug, Deserialize)]
struct Confirm {
    csrf: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    keep: String,
}

async fn redrive_confirmed(
    State(app): State<Arc<App>>,
    uri: axum::http::Uri,
    UrlQuery(q): UrlQuery<RedriveQuery>,
    Form(c): Form<Confirm>,
) -> Response {
    if let Some(refused) = confirmed(&app, &c) {
        return refused;
    }
    let report = redrive(&app, &q, false, &c.keep).await;
    let body = pages::redrive_done(&report, uri.query().unwrap_or_default());
    page(&app, "dead-letters", "Redrive", body).into_response()
}

fn confirmed(app: &App, c: &Confirm) -> Option<Response> {
    if !app.allow_redrive {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "Redrive is off: start the console with --allow-redrive.",
        ));
    }
    if !app.keys.csrf_ok(Some(&c.csrf)) {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or stale: reload the page.",
        ));
    }
    if c.confirm != "yes" {
        return Some(refuse(
            StatusCode::BAD_REQUEST,
            "Tick the confirmation box to redrive.",
        ));
    }
    None
}

async fn redrive(
    app: &App,
    q: &RedriveQuery,
    dry_run: bool,
    keep: &str,
) -> Result<RedriveReport, String> {
    let args = q.args(dry_run, keep).map_err(|e| format!("{e:#}"))?;
    let _one_at_a_time = app.redriving.lock().await;
    crate::dlq::redrive::redrive_kafka(&app.at, &args)
        .await
        .map_err(|e| format!("{e:#}"))
}

async fn redrive_sqs(State(app): State<Arc<App>>, Form(c): Form<Confirm>) -> Response {
    if let Some(refused) = confirmed(&app, &c) {
        return refused;
    }
    let _one_at_a_time = app.redriving.lock().await;
    let body = match crate::dlq::redrive_sqs(&app.at).await {
        Ok(r) => maud::html! {
            h1 { "SQS DLQ redrive: done" }
            p.count { "Moved " span #sent { (r.moved) } " message(s) back to the queue; " (r.not_sent) " not sent (still in the DLQ); " (r.not_deleted) " sent but not deleted from the DLQ (a later redrive sends them again, stored once)." }
        },
        Err(e) => maud::html! { h1 { "SQS DLQ redrive" } p.error { (format!("{e:#}")) } },
    };
    page(&app, "dead-letters", "Redrive", body).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeviceQuery {
    id: String,
}

async fn devices_page(
    State(app): State<Arc<App>>,
    UrlQuery(q): UrlQuery<DeviceQuery>,
) -> Html<String> {
    let id = q.id.trim();
    let found = if id.is_empty() {
        None
    } else {
        Some(find_device(&app.at, id).await.map_err(|e| format!("{e:#}")))
    };
    page(&app, "devices", "Devices", pages::devices(id, &found))
}

async fn find_device(at: &Endpoints, id: &str) -> anyhow::Result<devices::Found> {
    let db = crate::common::mongo(&at.mongo, &at.kafka.local()).await?;
    let layout = devices::layout(&db, &at.store).await?;
    devices::find(&db, &at.store, layout, id).await
}

async fn login_page(State(app): State<Arc<App>>) -> Response {
    if !app.keys.needs_login() {
        return Redirect::to("/").into_response();
    }
    Html(pages::login(None).into_string()).into_response()
}

#[derive(Debug, Deserialize)]
struct Login {
    token: String,
}

async fn login(State(app): State<Arc<App>>, Form(l): Form<Login>) -> Response {
    match app.keys.login(&l.token) {
        Some(session) => {
            let mut r = Redirect::to("/").into_response();
            let cookie = format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        None => (
            StatusCode::UNAUTHORIZED,
            Html(pages::login(Some("That token is not the console's.")).into_string()),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct Logout {
    csrf: String,
}

async fn logout(State(app): State<Arc<App>>, Form(l): Form<Logout>) -> Response {
    if !app.keys.csrf_ok(Some(&l.csrf)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or stale.",
        );
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "iot_console_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
