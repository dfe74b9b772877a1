//! The dead-letters page's view model: a filter from the page's query (the same filter a
//! bulk redrive uses), and each record as rows of headers, violations and a payload that
//! is pretty-printed and cut safely. Pure.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use telemetry::envelope::header;

use crate::dlq::plan::{DeadLetter, Filter, device};

/// The most payload characters shown per record.
pub const PAYLOAD_CHARS: usize = 4_000;
pub const DEFAULT_LIMIT: usize = 100;

/// The page's filter, as the query string carries it (empty fields are no filter).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Query {
    pub reason: String,
    pub kind: String,
    pub stage: String,
    pub device: String,
    /// A duration ago ("2h") or an RFC 3339 time.
    pub since: String,
    /// "kafka" (default) or "sqs".
    pub source: String,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl Query {
    pub fn filter(&self, now: DateTime<Utc>) -> Result<Filter, String> {
        let since_ms = match some(&self.since) {
            None => None,
            Some(s) => Some(parse_since(&s, now)?.timestamp_millis()),
        };
        Ok(Filter {
            reason: some(&self.reason),
            kind: some(&self.kind),
            stage: some(&self.stage),
            device: some(&self.device),
            since_ms,
            record: None,
        })
    }

    pub fn is_sqs(&self) -> bool {
        self.source == "sqs"
    }
}

pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(s).map_err(|e| {
        format!("since: `{s}` is neither a duration (2h) nor an RFC 3339 time: {e}")
    })?;
    Ok(now - chrono::Duration::from_std(ago).map_err(|e| format!("since: {e}"))?)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub path: String,
    pub rule: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub partition: i32,
    pub offset: i64,
    pub time: String,
    pub stage: String,
    pub kind: String,
    pub reason: String,
    pub device: Option<String>,
    pub headers: Vec<(String, String)>,
    pub violations: Vec<Violation>,
    pub payload: String,
    pub truncated: bool,
}

pub fn row(r: &DeadLetter<'_>) -> Row {
    let text = |name: &str| r.header(name).unwrap_or_default().to_owned();
    let violations = r
        .header(header::DLQ_VIOLATIONS)
        .and_then(|v| serde_json::from_str::<Vec<Value>>(v).ok())
        .unwrap_or_default()
        .iter()
        .map(|v| Violation {
            path: v["path"].as_str().unwrap_or_default().to_owned(),
            rule: v["rule"].as_str().unwrap_or_default().to_owned(),
            message: v["message"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    let (payload, truncated) = pretty(r.value.unwrap_or_default(), PAYLOAD_CHARS);
    Row {
        partition: r.partition,
        offset: r.offset,
        time: r
            .timestamp_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .map_or_else(
                || "-".into(),
                |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
        stage: text(header::DLQ_STAGE),
        kind: text(header::DLQ_KIND),
        reason: text(header::DLQ_REASON),
        device: device(r),
        headers: r
            .headers
            .iter()
            .filter(|(n, _)| *n != header::DLQ_VIOLATIONS)
            .map(|(n, v)| ((*n).to_owned(), cut(&String::from_utf8_lossy(v), 300).0))
            .collect(),
        violations,
        payload,
        truncated,
    }
}

/// JSON pretty-printed; anything else as (lossy) text. At most `max` characters, cut
/// on a character boundary, and whether it was cut.
pub fn pretty(bytes: &[u8], max: usize) -> (String, bool) {
    let text = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    };
    cut(&text, max)
}

fn cut(s: &str, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        Some((at, _)) => (s[..at].to_owned(), true),
        None => (s.to_owned(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter<'a>(headers: Vec<(&'a str, &'a [u8])>, value: &'a [u8]) -> DeadLetter<'a> {
        DeadLetter {
            partition: 2,
            offset: 7,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"dev-1"),
            value: Some(value),
            headers,
        }
    }

    #[test]
    fn a_row_shows_violations_as_a_table_and_the_payload_pretty() {
        let violations =
            br#"[{"path":"/readings/t","rule":"non_finite","message":"must be finite"}]"#;
        let r = letter(
            vec![
                (header::DLQ_STAGE, b"kafka-to-mongo"),
                (header::DLQ_KIND, b"invalid"),
                (header::DLQ_REASON, b"1 violation"),
                (header::DLQ_VIOLATIONS, violations),
            ],
            br#"{"deviceId":"dev-1","readings":{"t":1}}"#,
        );
        let row = row(&r);
        assert_eq!(row.device.as_deref(), Some("dev-1"));
        assert_eq!(
            row.violations,
            vec![Violation {
                path: "/readings/t".into(),
                rule: "non_finite".into(),
                message: "must be finite".into()
            }]
        );
        assert!(row.headers.iter().all(|(n, _)| n != header::DLQ_VIOLATIONS));
        assert!(row.payload.contains("\n  \"deviceId\": \"dev-1\""));
        assert!(!row.truncated);
        assert_eq!(row.time, "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn payloads_are_cut_on_a_character_boundary() {
        let text = "é".repeat(10);
        assert_eq!(pretty(text.as_bytes(), 4), ("éééé".into(), true));
        assert_eq!(pretty(b"\xff\xfeabc", 100).0, "\u{fffd}\u{fffd}abc");
        assert_eq!(pretty(b"[1,2]", 100), ("[\n  1,\n  2\n]".into(), false));
    }

    #[test]
    fn the_query_becomes_the_redrive_filter() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let q = Query {
            reason: " finite ".into(),
            since: "2h".into(),
            ..Query::default()
        };
        let f = q.filter(now).unwrap();
        assert_eq!(f.reason.as_deref(), Some("finite"));
        assert_eq!(f.kind, None);
        assert_eq!(f.since_ms, Some(now.timestamp_millis() - 2 * 3_600_000));
        let bad = Query {
            since: "yesterday-ish".into(),
            ..Query::default()
        };
        assert!(bad.filter(now).unwrap_err().starts_with("since:"));
    }
}
