//! Device payload schema v1 (events/schema/device-payload.v1.json), checked in full:
//! every violation is reported, each with its JSON Pointer and rule.

use chrono::{DateTime, TimeDelta, Timelike as _, Utc};
use serde_json::{Map, Value};

use crate::error::{Rejection, Rule, Violation};
use crate::parse::push_pointer_token;

pub const MAX_DEPTH: usize = 8;
/// Most violations reported for one message: enough to fix it, and a bound on what a
/// hostile body (thousands of `$` keys under one long key) can make the bridge allocate.
pub const MAX_VIOLATIONS: usize = 64;
pub const MAX_READINGS: usize = 256;
pub const MAX_READING_CHARS: usize = 256;
pub const MAX_DEVICE_ID_CHARS: usize = 128;
pub const MAX_FUTURE_SKEW_HOURS: i64 = 24;
/// 2000-01-01T00:00:00Z: devices with an unset clock report 1970, which must not be stored as data.
pub const MIN_TS_MILLIS: i64 = 946_684_800_000;

/// Fields the AWS IoT rule adds to the device payload (`topic()`, `clientid()`, `timestamp()`).
pub const FIELD_MQTT_TOPIC: &str = "mqtt_topic";
pub const FIELD_CLIENT_ID: &str = "client_id";
pub const FIELD_RECEIVED_AT: &str = "received_at";

const KNOWN_FIELDS: [&str; 8] = [
    "deviceId",
    "seq",
    "ts",
    "readings",
    "meta",
    FIELD_MQTT_TOPIC,
    FIELD_CLIENT_ID,
    FIELD_RECEIVED_AT,
];

/// A message that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    pub device_id: String,
    pub seq: Option<u64>,
    pub ts: DateTime<Utc>,
    pub readings: Map<String, Value>,
    pub meta: Option<Map<String, Value>>,
    pub mqtt_topic: Option<String>,
    pub client_id: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
    /// Unknown top-level fields, kept as sent.
    pub extra: Map<String, Value>,
}

/// Checks a parsed body. `non_finite` lists the pointers where the text held NaN/Infinity
/// (see [`crate::parse::ParsedBody`]); `now` is the bridge clock, for the `ts` window.
pub fn validate(
    mut body: Map<String, Value>,
    non_finite: &[String],
    now: DateTime<Utc>,
) -> Result<Telemetry, Rejection> {
    let mut v = Vec::new();
    let mut path = Vec::new();
    for (key, value) in &body {
        if v.len() >= MAX_VIOLATIONS {
            break;
        }
        path.push(Token::Key(key));
        check_key(key, &path, &mut v);
        check_nesting(value, &mut path, 2, &mut v);
        path.pop();
    }
    v.extend(
        non_finite
            .iter()
            .map(|p| Violation::new(p.clone(), Rule::NonFinite)),
    );

    let device_id = device_id(&body, &mut v);
    let seq = seq(&body, &mut v);
    let ts = timestamp(&body, now, &mut v);
    let readings_ok = readings(&body, non_finite, &mut v);
    let meta_ok = optional(&body, "meta", &mut v, "an object", |x| {
        x.is_object().then_some(())
    });
    let mqtt_topic = optional(&body, FIELD_MQTT_TOPIC, &mut v, "a string", |x| {
        x.as_str().map(str::to_owned)
    });
    let client_id = optional(&body, FIELD_CLIENT_ID, &mut v, "a string", |x| {
        x.as_str().map(str::to_owned)
    });
    let received_at = optional(
        &body,
        FIELD_RECEIVED_AT,
        &mut v,
        "integer epoch milliseconds",
        |x| x.as_i64().and_then(DateTime::from_timestamp_millis),
    );

    match (device_id, ts, meta_ok) {
        (Some(device_id), Some(ts), Some(has_meta)) if readings_ok && v.is_empty() => {
            // Moved out, not cloned; `take` leaves the order of the unknown fields alone.
            let readings = take_object(&mut body, "readings").unwrap_or_default();
            let meta = has_meta.and_then(|()| take_object(&mut body, "meta"));
            body.retain(|k, _| !KNOWN_FIELDS.contains(&k.as_str()));
            Ok(Telemetry {
                device_id,
                seq,
                ts,
                readings,
                meta,
                mqtt_topic: mqtt_topic.flatten(),
                client_id: client_id.flatten(),
                received_at: received_at.flatten(),
                extra: body,
            })
        }
        _ => {
            v.truncate(MAX_VIOLATIONS);
            Err(Rejection::Invalid(v))
        }
    }
}

/// The `deviceId` rule alone: the Lambda needs it to key the Kafka record.
pub fn check_device_id(value: Option<&Value>) -> Result<&str, Violation> {
    match value {
        None => Err(Violation::new("/deviceId", Rule::Required)),
        Some(Value::String(s)) if is_device_id(s) => Ok(s),
        Some(Value::String(_)) => Err(Violation::new("/deviceId", Rule::DeviceIdFormat)),
        Some(_) => Err(Violation::new(
            "/deviceId",
            Rule::Type {
                expected: "a string",
            },
        )),
    }
}

fn is_device_id(s: &str) -> bool {
    (1..=MAX_DEVICE_ID_CHARS).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// `ts` as RFC 3339 or integer epoch milliseconds, without the time window.
pub fn parse_ts(value: &Value) -> Option<Result<DateTime<Utc>, Rule>> {
    match value {
        Value::String(s) => Some(parse_rfc3339(s).ok_or(Rule::TimestampFormat)),
        Value::Number(n) => {
            // Beyond i64 (a 20-digit integer reads as u64 or f64): out of range, not mistyped.
            let ms = n.as_i64().or_else(|| match n.as_f64() {
                _ if n.as_u64().is_some() => Some(i64::MAX),
                Some(f) if f > i64::MAX as f64 => Some(i64::MAX),
                Some(f) if f < i64::MIN as f64 => Some(i64::MIN),
                _ => None,
            })?;
            Some(DateTime::from_timestamp_millis(ms).ok_or(if ms < 0 {
                Rule::TimestampTooOld
            } else {
                Rule::TimestampInFuture {
                    max_skew_hours: MAX_FUTURE_SKEW_HOURS,
                }
            }))
        }
        _ => None,
    }
}

/// RFC 3339 as JSON Schema's `date-time` reads it: `T` (or `t`) between date and time,
/// where chrono also takes a space; and a leap second only at 23:59:60 UTC.
fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    let t = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    let leap = t.nanosecond() >= 1_000_000_000;
    (!leap || (t.hour() == 23 && t.minute() == 59)).then_some(t)
}

fn device_id(body: &Map<String, Value>, v: &mut Vec<Violation>) -> Option<String> {
    check_device_id(body.get("deviceId"))
        .map(str::to_owned)
        .map_err(|e| v.push(e))
        .ok()
}

fn seq(body: &Map<String, Value>, v: &mut Vec<Violation>) -> Option<u64> {
    let value = body.get("seq")?;
    let seq = value.as_u64();
    if seq.is_none() {
        v.push(Violation::new(
            "/seq",
            Rule::Type {
                expected: "an unsigned 64-bit integer",
            },
        ));
    }
    seq
}

fn timestamp(
    body: &Map<String, Value>,
    now: DateTime<Utc>,
    v: &mut Vec<Violation>,
) -> Option<DateTime<Utc>> {
    let Some(value) = body.get("ts") else {
        v.push(Violation::new("/ts", Rule::Required));
        return None;
    };
    let rule = match parse_ts(value) {
        None => Rule::Type {
            expected: "an RFC 3339 string or integer epoch milliseconds",
        },
        Some(Err(rule)) => rule,
        Some(Ok(ts)) if ts.timestamp_millis() < MIN_TS_MILLIS => Rule::TimestampTooOld,
        Some(Ok(ts)) if ts > now + TimeDelta::hours(MAX_FUTURE_SKEW_HOURS) => {
            Rule::TimestampInFuture {
                max_skew_hours: MAX_FUTURE_SKEW_HOURS,
            }
        }
        Some(Ok(ts)) => return Some(ts),
    };
    v.push(Violation::new("/ts", rule));
    None
}

fn take_object(body: &mut Map<String, Value>, field: &str) -> Option<Map<String, Value>> {
    match body.get_mut(field).map(Value::take) {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Whether `readings` passed every rule.
fn readings(body: &Map<String, Value>, non_finite: &[String], v: &mut Vec<Violation>) -> bool {
    let Some(value) = body.get("readings") else {
        v.push(Violation::new("/readings", Rule::Required));
        return false;
    };
    let Some(map) = value.as_object() else {
        v.push(Violation::new(
            "/readings",
            Rule::Type {
                expected: "an object",
            },
        ));
        return false;
    };
    let before = v.len();
    if map.len() > MAX_READINGS {
        v.push(Violation::new(
            "/readings",
            Rule::MaxEntries { max: MAX_READINGS },
        ));
    }
    // The pointer is built only for a reading that may be wrong: most are numbers.
    let path_of = |name: &str| {
        let mut path = String::from("/readings");
        push_pointer_token(&mut path, name);
        path
    };
    for (name, reading) in map {
        if v.len() >= MAX_VIOLATIONS {
            break;
        }
        let rule = match reading {
            Value::Number(_) | Value::Bool(_) => continue,
            Value::String(s)
                if s.len() <= MAX_READING_CHARS || s.chars().count() <= MAX_READING_CHARS =>
            {
                continue;
            }
            Value::String(_) => Rule::MaxLength {
                max: MAX_READING_CHARS,
            },
            // Already reported as NonFinite by the parse step.
            Value::Null if non_finite.contains(&crate::parse::bounded_pointer(&path_of(name))) => {
                continue;
            }
            _ => Rule::Type {
                expected: "a finite number, a boolean or a string",
            },
        };
        v.push(Violation::new(
            crate::parse::bounded_pointer(&path_of(name)),
            rule,
        ));
    }
    v.len() == before
}

/// `Some(None)`: absent. `Some(Some(x))`: present and well-typed. `None`: present and wrong.
fn optional<T>(
    body: &Map<String, Value>,
    field: &str,
    v: &mut Vec<Violation>,
    expected: &'static str,
    read: impl Fn(&Value) -> Option<T>,
) -> Option<Option<T>> {
    match body.get(field) {
        None => Some(None),
        Some(value) => match read(value) {
            Some(x) => Some(Some(x)),
            None => {
                v.push(Violation::new(format!("/{field}"), Rule::Type { expected }));
                None
            }
        },
    }
}

/// A step of a JSON Pointer, kept unescaped until a violation needs the pointer.
enum Token<'a> {
    Key(&'a str),
    Index(usize),
}

/// Cut to [`crate::parse::MAX_POINTER_BYTES`]: only the last key can make it long, and
/// is then cut as a whole string.
fn pointer(path: &[Token<'_>]) -> String {
    let mut out = String::new();
    for token in path {
        if out.len() > crate::parse::MAX_POINTER_BYTES {
            break;
        }
        match token {
            Token::Key(key) => push_pointer_token(&mut out, key),
            Token::Index(idx) => {
                out.push('/');
                out.push_str(&idx.to_string());
            }
        }
    }
    crate::parse::bounded_pointer(&out)
}

fn check_key(key: &str, path: &[Token<'_>], v: &mut Vec<Violation>) {
    if key.starts_with('$') || key.contains('.') || key.contains('\0') {
        v.push(Violation::new(pointer(path), Rule::ReservedKey));
    }
}

/// Walks below a top-level field; `depth` counts the body object as level 1.
fn check_nesting<'a>(
    value: &'a Value,
    path: &mut Vec<Token<'a>>,
    depth: usize,
    v: &mut Vec<Violation>,
) {
    let is_container = matches!(value, Value::Object(_) | Value::Array(_));
    if is_container && depth > MAX_DEPTH {
        v.push(Violation::new(
            pointer(path),
            Rule::MaxDepth { max: MAX_DEPTH },
        ));
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if v.len() >= MAX_VIOLATIONS {
                    return;
                }
                path.push(Token::Key(key));
                check_key(key, path, v);
                check_nesting(child, path, depth + 1, v);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (idx, child) in items.iter().enumerate() {
                if v.len() >= MAX_VIOLATIONS {
                    return;
                }
                path.push(Token::Index(idx));
                check_nesting(child, path, depth + 1, v);
                path.pop();
            }
        }
        _ => {}
    }
}
