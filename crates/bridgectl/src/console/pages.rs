//! The console's HTML, server-rendered with maud (every value escaped). One function
//! per page; the flow page's body is also what the live stream sends.

use maud::{DOCTYPE, Markup, html};

use super::deadletters::{Query, Row};
use super::devices::{DeviceView, Found};
use super::flow::{FlowView, StageBox};
use super::svg;
use crate::dlq::plan::DEFAULT_HEADERS;
use crate::dlq::redrive::RedriveReport;

pub struct Chrome<'a> {
    pub active: &'static str,
    pub allow_redrive: bool,
    pub csrf: &'a str,
    pub signed_in: bool,
}

pub fn layout(title: &str, c: &Chrome<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · IoT bridge console" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    strong { "IoT bridge" }
                    nav {
                        @for (href, name, id) in [("/", "Flow", "flow"), ("/dead-letters", "Dead letters", "dead-letters"), ("/devices", "Devices", "devices")] {
                            a href=(href) class=@if c.active == id { "active" } { (name) }
                        }
                    }
                    span.mode {
                        @if c.allow_redrive { "redrive enabled" } @else { "read-only" }
                    }
                    @if c.signed_in {
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(c.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn login(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Sign in · IoT bridge console" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body {
                main.narrow {
                    h1 { "IoT bridge console" }
                    p { "This console is served beyond loopback: enter the token it was started with (--token or CONSOLE_TOKEN)." }
                    @if let Some(e) = error { p.error { (e) } }
                    form method="post" action="/login" {
                        label for="token" { "Token" }
                        input #token type="password" name="token" autocomplete="current-password" autofocus;
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

/// The flow boxes alone: the page's body and each live update.
pub fn flow_boxes(view: Option<&FlowView>) -> Markup {
    html! {
        @match view {
            None => p.muted { "Collecting the first snapshot…" },
            Some(v) => {
                p.muted.updated { "as of " (fmt_ms(v.at_ms)) " · updates every few seconds" }
                div.flow {
                    @for (i, b) in v.boxes.iter().enumerate() {
                        @if i > 0 { div.arrow aria-hidden="true" { "→" } }
                        (stage_box(b))
                    }
                }
            }
        }
    }
}

fn stage_box(b: &StageBox) -> Markup {
    html! {
        section class={"stage " (b.level.css())} id={"stage-" (b.id)} data-level=(b.level.css()) {
            h2 { (b.title) span.level { (b.level.css()) } }
            dl {
                @for (k, v) in &b.figures {
                    dt { (k) }
                    dd data-figure=(k) { (v) }
                }
            }
            @if let Some((r, what)) = b.rate {
                p.rate { (format!("{r:.1}")) "/s " (what) " (last minute)" }
            }
            (svg::sparkline(&b.series))
            @if let Some(t) = &b.table {
                table.small {
                    thead { tr { @for h in &t.head { th { (h) } } } }
                    tbody { @for row in &t.rows { tr { @for c in row { td { (c) } } } } }
                }
            }
            @for n in &b.notes { p.note { (n) } }
        }
    }
}

pub fn flow(view: Option<&FlowView>) -> Markup {
    html! {
        h1 { "Flow" }
        p.muted { "Device → IoT rule → SQS → sqs-to-kafka (Lambda) → Kafka → kafka-to-mongo (writer) → MongoDB. Amber and red follow the CloudWatch alarms Terraform creates." }
        div #flow-live data-stream="/events" { (flow_boxes(view)) }
    }
}

fn filter_form(q: &Query, action: &str) -> Markup {
    html! {
        form.filters method="get" action=(action) {
            label { "Source "
                select name="source" {
                    option value="kafka" selected[!q.is_sqs()] { "Kafka dead-letter topic" }
                    option value="sqs" selected[q.is_sqs()] { "SQS DLQ" }
                }
            }
            label { "Reason contains " input name="reason" value=(q.reason); }
            label { "Kind "
                select name="kind" {
                    @for k in ["", "invalid", "unparseable", "refused", "unreadable"] {
                        option value=(k) selected[q.kind == k] { @if k.is_empty() { "any" } @else { (k) } }
                    }
                }
            }
            label { "Stage "
                select name="stage" {
                    @for s in ["", "sqs-to-kafka", "kafka-to-mongo"] {
                        option value=(s) selected[q.stage == s] { @if s.is_empty() { "any" } @else { (s) } }
                    }
                }
            }
            label { "Device " input name="device" value=(q.device); }
            label { "Since " input name="since" value=(q.since) placeholder="2h or 2026-12-01T10:00:00Z"; }
            button type="submit" { "Filter" }
        }
    }
}

fn redrive_query(q: &Query, record: Option<(i32, i64)>) -> String {
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("reason", &q.reason),
        ("kind", &q.kind),
        ("stage", &q.stage),
        ("device", &q.device),
        ("since", &q.since),
    ] {
        if !v.trim().is_empty() {
            pairs.append_pair(k, v);
        }
    }
    if let Some((p, o)) = record {
        pairs.append_pair("record", &format!("{p}:{o}"));
    }
    pairs.finish()
}

pub fn dead_letters(
    q: &Query,
    rows: &Result<(Vec<Row>, usize), String>,
    allow_redrive: bool,
) -> Markup {
    html! {
        h1 { "Dead letters" }
        (filter_form(q, "/dead-letters"))
        @match rows {
            Err(e) => p.error { (e) },
            Ok((rows, matched)) => {
                p.count {
                    span #matched { (matched) } " matching record(s)"
                    @if *matched > rows.len() { ", the newest " (rows.len()) " shown" }
                }
                @if allow_redrive && *matched > 0 {
                    p { a.button href={"/redrive?" (redrive_query(q, None))} { "Redrive these " (matched) " (dry run first)" } }
                }
                @for r in rows { (dead_letter(r, q, allow_redrive)) }
            }
        }
    }
}

fn dead_letter(r: &Row, q: &Query, allow_redrive: bool) -> Markup {
    html! {
        article.letter data-reason=(r.reason) data-kind=(r.kind) data-stage=(r.stage) {
            header {
                strong { (r.stage) ": " (r.kind) }
                " · " span.reason { (r.reason) }
                " · " (r.device.as_deref().unwrap_or("device unknown"))
                " · " code { (r.partition) ":" (r.offset) } " · " (r.time)
                @if allow_redrive {
                    " " a.small href={"/redrive?" (redrive_query(q, Some((r.partition, r.offset))))} { "redrive this record" }
                }
            }
            @if !r.violations.is_empty() {
                table.small.violations {
                    thead { tr { th { "path" } th { "rule" } th { "message" } } }
                    tbody { @for v in &r.violations { tr { td { code { (v.path) } } td { (v.rule) } td { (v.message) } } } }
                }
            }
            details {
                summary { "headers (" (r.headers.len()) ")" }
                table.small { tbody { @for (k, v) in &r.headers { tr { th { (k) } td { code { (v) } } } } } }
            }
            pre.payload { (r.payload) @if r.truncated { "\n… (cut)" } }
        }
    }
}

pub fn sqs_dead_letters(
    q: &Query,
    rows: &Result<Vec<serde_json::Value>, String>,
    allow_redrive: bool,
    csrf: &str,
) -> Markup {
    html! {
        h1 { "Dead letters" }
        (filter_form(q, "/dead-letters"))
        p.note { "The SQS DLQ holds messages that failed maxReceiveCount times before reaching Kafka. Listing receives them with a zero visibility timeout, so they stay in the DLQ. Filters apply to the Kafka topic only." }
        @match rows {
            Err(e) => p.error { (e) },
            Ok(rows) => {
                p.count { span #matched { (rows.len()) } " message(s)" }
                @if allow_redrive && !rows.is_empty() {
                    form.confirm method="post" action="/redrive/sqs" {
                        input type="hidden" name="csrf" value=(csrf);
                        label { input type="checkbox" name="confirm" value="yes" required; " Move every message of the SQS DLQ back to the queue (sent first, then deleted: a crash can only send one twice, stored once)." }
                        button type="submit" { "Redrive the SQS DLQ" }
                    }
                }
                @for m in rows {
                    article.letter {
                        header { code { (m["messageId"].as_str().unwrap_or_default()) } " · receive count " (m["attributes"]["ApproximateReceiveCount"].as_str().unwrap_or("?")) }
                        pre.payload { (super::deadletters::pretty(m["body"].as_str().unwrap_or_default().as_bytes(), super::deadletters::PAYLOAD_CHARS).0) }
                    }
                }
            }
        }
    }
}

pub fn redrive_plan(
    query: &str,
    report: &Result<RedriveReport, String>,
    keep: &str,
    csrf: &str,
) -> Markup {
    html! {
        h1 { "Redrive: dry run" }
        (safety())
        @match report {
            Err(e) => p.error { (e) },
            Ok(r) => {
                p.count { "Would send " span #would-send { (r.redriven()) } " record(s): " (r.to_topic) " to the telemetry topic, " (r.to_sqs) " to the SQS queue. Nothing has been sent." }
                (skipped(r))
                @if !r.would_send.is_empty() {
                    ol.would { @for line in &r.would_send { li { (line) } } }
                }
                @if r.redriven() > 0 {
                    form.confirm method="post" action={"/redrive?" (query)} {
                        input type="hidden" name="csrf" value=(csrf);
                        label { "Keep these headers too (comma-separated; by default only "
                            @for (i, h) in DEFAULT_HEADERS.iter().enumerate() { @if i > 0 { ", " } code { (h) } }
                            " travel back) "
                            input name="keep" value=(keep);
                        }
                        label { input type="checkbox" name="confirm" value="yes" required; " Send these " (r.redriven()) " record(s) back once. Each is recorded in the ledger; a second redrive sends none of them again." }
                        button type="submit" { "Redrive" }
                    }
                }
            }
        }
    }
}

pub fn redrive_done(report: &Result<RedriveReport, String>, back: &str) -> Markup {
    html! {
        h1 { "Redrive: done" }
        (safety())
        @match report {
            Err(e) => p.error { (e) },
            Ok(r) => {
                p.count { "Sent " span #sent { (r.redriven()) } " record(s): " (r.to_topic) " to the telemetry topic, " (r.to_sqs) " to the SQS queue; " (r.failed) " failed (still in the dead-letter topic); " (r.unrecorded) " sent but not recorded (a later redrive may send them again, stored once)." }
                (skipped(r))
            }
        }
        p { a href={"/dead-letters?" (back)} { "Back to the dead letters" } }
    }
}

fn skipped(r: &RedriveReport) -> Markup {
    html! {
        @if !r.skipped.is_empty() {
            p { "Not sent: "
                @for (i, (why, n)) in r.skipped.iter().enumerate() { @if i > 0 { ", " } span data-skipped=(why) { (n) " " (why.replace('_', " ")) } }
            }
        }
    }
}

fn safety() -> Markup {
    html! {
        p.note { "Redrive is safe: the writer is idempotent. Each message's idempotency key is its document's _id, so a record that arrives twice is stored once and counted once. The ledger topic makes each dead letter go back at most once." }
    }
}

pub fn devices(id: &str, found: &Option<Result<Found, String>>) -> Markup {
    html! {
        h1 { "Devices" }
        form.filters method="get" action="/devices" {
            label { "Device id " input name="id" value=(id) autofocus; }
            button type="submit" { "Search" }
        }
        @match found {
            None => p.muted { "Type a device id, or the first characters of one." },
            Some(Err(e)) => p.error { (e) },
            Some(Ok(Found::Candidates(ids))) => {
                @if ids.is_empty() { p { "No device id starts with " code { (id) } "." } }
                @else {
                    p { "No device " code { (id) } "; these start with it:" }
                    ul { @for d in ids { li { a href={"/devices?id=" (url::form_urlencoded::byte_serialize(d.as_bytes()).collect::<String>())} { (d) } } } }
                }
            }
            Some(Ok(Found::Device(d))) => (device(d)),
        }
    }
}

fn device(d: &DeviceView) -> Markup {
    html! {
        h2 #device-id { (d.id) }
        dl.device {
            dt { "messages counted" } dd #device-count { (d.count.map_or("-".into(), |c| c.to_string())) }
            dt { "first seen" } dd { (d.first_seen.as_deref().unwrap_or("-")) }
            dt { "last seen" } dd { (d.last_seen.as_deref().unwrap_or("-")) }
        }
        h3 { "Last " (d.readings.len()) " readings" }
        @if d.readings.is_empty() { p.muted { "No stored readings." } } @else { (svg::readings_chart(&d.readings)) }
        h3 { "Latest state (devices.last)" }
        pre.payload { (d.last.as_deref().unwrap_or("-")) }
    }
}

pub fn error_page(status: u16, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" { head { meta charset="utf-8"; title { (status) } link rel="stylesheet" href="/assets/console.css"; }
            body { main.narrow { h1 { (status) } p { (message) } } } }
    }
}

fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}
