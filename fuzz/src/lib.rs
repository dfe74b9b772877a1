//! What the fuzz targets share: the fixed bridge clock, the checks on a rejection and on a
//! stored document, and a small JSON model that can write what serde_json cannot (NaN,
//! Infinity, numbers that overflow f64) in any key order.

use arbitrary::{Result as ArbResult, Unstructured};
use bson::raw::{RawBsonRef, RawDocument};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use telemetry::document::{Prepared, field};
use telemetry::parse::MAX_POINTER_BYTES;
use telemetry::validate::MAX_VIOLATIONS;
use telemetry::{Rejection, Rule, Telemetry};

/// Breaks found and reported but not fixed yet, which a run steps over (each at the one
/// check it breaks) when `IOT_BRIDGE_FUZZ_KNOWN` names them (comma-separated).
/// infra/local/fuzz-tools sets it from fuzz/known-issues (FUZZ_STRICT=1: not at all).
pub fn known(issue: &str) -> bool {
    static KNOWN: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("IOT_BRIDGE_FUZZ_KNOWN")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|k| k == issue || k == "all")
}

/// The bridge clock of every target: the one events/bad/manifest.json is judged against.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_780_272_000_000).expect("2026-06-01T00:00:00Z")
}

/// A rejection says why: a non-empty list of violations, each with a rule code and a JSON
/// Pointer ("" or "/..."), and its header form is a JSON array of as many entries.
pub fn check_rejection(r: &Rejection) {
    let text = r.to_string();
    let (kind, reason) = text
        .split_once(": ")
        .unwrap_or_else(|| panic!("rejection without a reason: {text:?}"));
    assert_eq!(kind, r.kind(), "{text:?}");
    assert!(
        !reason.trim().is_empty(),
        "rejection names no reason: {r:?}"
    );
    match r {
        Rejection::Invalid(v) => {
            assert!(!v.is_empty(), "Invalid with no violation");
            assert!(v.len() <= MAX_VIOLATIONS, "{} violations reported", v.len());
            for violation in v {
                assert!(!violation.rule.code().is_empty(), "{violation:?}");
                let known_path = violation.rule == Rule::NonFinite && known("envelope-paths");
                assert!(
                    known_path || violation.path.is_empty() || violation.path.starts_with('/'),
                    "violation path is not a JSON Pointer: {:?} ({})",
                    violation.path,
                    violation.rule.code()
                );
                assert!(
                    known_path || violation.path.len() <= MAX_POINTER_BYTES + "...[cut]".len(),
                    "a violation path of {} bytes",
                    violation.path.len()
                );
            }
            let json: Vec<Value> = serde_json::from_str(&r.violations_json())
                .expect("violations_json is a JSON array");
            assert_eq!(json.len(), v.len());
        }
        Rejection::Unparseable(_) => assert!(r.violations().is_empty()),
        other => panic!("a message check returned {other:?}"),
    }
}

/// The document MongoDB stores: `_id` is the key, no field name anywhere is an operator
/// (`$...`), a path (`.`) or holds NUL, and every value is the validated one, unchanged.
pub fn check_document(p: &Prepared, key: &str, t: &Telemetry) {
    let doc = &p.doc;
    assert_eq!(p.key, key);
    walk_keys(doc, true, &mut Vec::new());
    assert_eq!(doc.get_str(field::ID).expect("_id is a string"), key);
    assert_eq!(
        doc.get_str(field::DEVICE_ID).expect("deviceId"),
        t.device_id
    );
    assert_eq!(
        doc.get_datetime(field::TS)
            .expect("ts is a date")
            .timestamp_millis(),
        t.ts.timestamp_millis()
    );
    match t.seq {
        None => assert!(doc.get(field::SEQ).unwrap().is_none()),
        Some(s) if s <= i64::MAX as u64 => {
            assert_eq!(doc.get_i64(field::SEQ).unwrap(), s as i64)
        }
        // Above i64::MAX: an exact Decimal128, so MongoDB still orders seqs by value.
        Some(s) => match doc.get(field::SEQ).unwrap() {
            Some(RawBsonRef::Decimal128(d)) => assert_eq!(d.to_string(), s.to_string()),
            other => panic!("seq {s} stored as {other:?}"),
        },
    }
    same_map(
        &t.readings,
        doc.get_document(field::READINGS).expect("readings"),
    );
    match &t.meta {
        None => assert!(doc.get(field::META).unwrap().is_none()),
        Some(m) => same_map(m, doc.get_document(field::META).expect("meta")),
    }
    if t.extra.is_empty() {
        assert!(doc.get(field::EXTRA).unwrap().is_none());
    } else {
        same_map(&t.extra, doc.get_document(field::EXTRA).expect("extra"));
    }
    assert_eq!(p.size(), doc.as_bytes().len());
    assert!(
        p.size() < 16 * 1024 * 1024,
        "document over MongoDB's 16 MiB"
    );
}

fn walk_keys(doc: &RawDocument, top: bool, path: &mut Vec<String>) {
    for entry in doc {
        let (k, v) = entry.unwrap_or_else(|e| panic!("malformed BSON at {path:?}: {e}"));
        let fixed = top && k == field::ID;
        assert!(
            fixed || !(k.starts_with('$') || k.contains('.') || k.contains('\0')),
            "reserved field name {k:?} at {path:?}"
        );
        path.push(k.to_owned());
        walk_value(v, path);
        path.pop();
    }
}

fn walk_value(v: RawBsonRef<'_>, path: &mut Vec<String>) {
    match v {
        RawBsonRef::Document(d) => walk_keys(d, false, path),
        RawBsonRef::Array(a) => {
            for (i, item) in a.into_iter().enumerate() {
                let item = item.unwrap_or_else(|e| panic!("malformed BSON array at {path:?}: {e}"));
                path.push(i.to_string());
                walk_value(item, path);
                path.pop();
            }
        }
        _ => {}
    }
}

fn same_map(json: &Map<String, Value>, doc: &RawDocument) {
    let mut n = 0;
    for (entry, (k, v)) in doc.into_iter().zip(json) {
        let (dk, dv) = entry.expect("BSON entry");
        assert_eq!(dk, k);
        same_value(v, dv, k);
        n += 1;
    }
    assert_eq!(n, json.len(), "a field was lost on the way to BSON");
    assert_eq!(
        doc.into_iter().count(),
        json.len(),
        "a field was added on the way to BSON"
    );
}

fn same_value(json: &Value, bson: RawBsonRef<'_>, at: &str) {
    match (json, bson) {
        (Value::Null, RawBsonRef::Null) => {}
        (Value::Bool(a), RawBsonRef::Boolean(b)) => assert_eq!(*a, b, "{at}"),
        (Value::String(a), RawBsonRef::String(b)) => assert_eq!(a, b, "{at}"),
        (Value::Number(n), RawBsonRef::Int64(i)) => assert_eq!(n.as_i64(), Some(i), "{at}"),
        (Value::Number(n), RawBsonRef::Double(d)) => {
            assert!(n.as_i64().is_none(), "{at}: integer {n} stored as a double");
            let f = n.as_f64().expect("a serde_json number has an f64");
            assert_eq!(f.to_bits(), d.to_bits(), "{at}: {n} stored as {d}");
        }
        (Value::Array(a), RawBsonRef::Array(b)) => {
            let items: Vec<_> = b.into_iter().map(|x| x.expect("BSON item")).collect();
            assert_eq!(items.len(), a.len(), "{at}");
            for (x, y) in a.iter().zip(items) {
                same_value(x, y, at);
            }
        }
        (Value::Object(a), RawBsonRef::Document(b)) => same_map(a, b),
        (j, b) => panic!("{at}: {j} stored as {b:?}"),
    }
}

/// JSON as a device (or a producer) may write it: including the non-finite numbers
/// serde_json refuses, and integers too large for any Rust integer.
#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    I(i64),
    U(u64),
    F(f64),
    /// Written as is: NaN, Infinity, -Infinity, 1e400, a 30-digit integer...
    Raw(&'static str),
    S(String),
    A(Vec<J>),
    O(Vec<(String, J)>),
}

const RAW_NUMBERS: [&str; 9] = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "123456789012345678901234567890",
    "-0",
    "1E-400",
    "18446744073709551616",
];

/// Keys that the schema gives a meaning to, or that MongoDB would misread.
const KEYS: [&str; 16] = [
    "deviceId",
    "seq",
    "ts",
    "readings",
    "meta",
    "mqtt_topic",
    "client_id",
    "received_at",
    "_id",
    "$set",
    "a.b",
    "a\0b",
    "body",
    "~/",
    "",
    "t",
];

impl J {
    /// A value at most `depth` containers deep (the schema allows 8 levels).
    pub fn generate(u: &mut Unstructured<'_>, depth: u32) -> ArbResult<J> {
        let kinds = if depth == 0 { 7 } else { 9 };
        Ok(match u.int_in_range(0..=kinds - 1)? {
            0 => J::Null,
            1 => J::Bool(u.arbitrary()?),
            2 => J::I(u.arbitrary()?),
            3 => J::U(u.arbitrary()?),
            4 => J::F(u.arbitrary()?),
            5 => J::Raw(u.choose(&RAW_NUMBERS)?),
            6 => J::S(u.arbitrary()?),
            7 => {
                let n = u.int_in_range(0..=4)?;
                J::A(
                    (0..n)
                        .map(|_| J::generate(u, depth - 1))
                        .collect::<ArbResult<_>>()?,
                )
            }
            _ => J::O(gen_entries(u, depth - 1, 4)?),
        })
    }

    /// A scalar a reading may be (number, boolean, string), sometimes not.
    pub fn gen_reading(u: &mut Unstructured<'_>) -> ArbResult<J> {
        if u.ratio(1, 8)? {
            J::generate(u, 1)
        } else {
            J::generate(u, 0)
        }
    }

    /// Writes the value; `order` (when set) permutes the keys of every object, `spaces` adds
    /// white space between tokens. Keys of one object must be distinct (see [`dedup`]).
    pub fn write(&self, out: &mut String, order: Option<&mut u64>, spaces: bool) {
        let mut order = order;
        let sp = |out: &mut String| {
            if spaces {
                out.push_str(" \n\t");
            }
        };
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::I(i) => out.push_str(&i.to_string()),
            J::U(n) => out.push_str(&n.to_string()),
            J::F(f) if f.is_finite() => out.push_str(&serde_json::to_string(f).unwrap()),
            J::F(f) if f.is_nan() => out.push_str("NaN"),
            J::F(f) => out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" }),
            J::Raw(r) => out.push_str(r),
            J::S(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            J::A(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    sp(out);
                    item.write(out, order.as_deref_mut(), spaces);
                }
                out.push(']');
            }
            J::O(entries) => {
                let mut idx: Vec<usize> = (0..entries.len()).collect();
                if let Some(seed) = order.as_deref_mut() {
                    shuffle(&mut idx, seed);
                }
                out.push('{');
                for (n, i) in idx.into_iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    sp(out);
                    let (k, v) = &entries[i];
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    sp(out);
                    v.write(out, order.as_deref_mut(), spaces);
                }
                out.push('}');
            }
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, None, false);
        out
    }
}

/// Object entries: keys from the schema's and MongoDB's interesting ones, or any string.
pub fn gen_entries(u: &mut Unstructured<'_>, depth: u32, max: u32) -> ArbResult<Vec<(String, J)>> {
    let n = u.int_in_range(0..=max)?;
    let mut entries = Vec::new();
    for _ in 0..n {
        let key = if u.ratio(1, 3)? {
            (*u.choose(&KEYS)?).to_owned()
        } else {
            u.arbitrary()?
        };
        entries.push((key, J::generate(u, depth)?));
    }
    Ok(dedup(entries))
}

/// Keeps the first of duplicate keys, at every depth: with duplicates, the key order would
/// decide which value a parser keeps.
pub fn dedup(entries: Vec<(String, J)>) -> Vec<(String, J)> {
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .map(|(k, v)| (k, dedup_value(v)))
        .collect()
}

fn dedup_value(v: J) -> J {
    match v {
        J::O(entries) => J::O(dedup(entries)),
        J::A(items) => J::A(items.into_iter().map(dedup_value).collect()),
        other => other,
    }
}

/// Fisher-Yates with a xorshift generator seeded by the input.
fn shuffle(idx: &mut [usize], seed: &mut u64) {
    for i in (1..idx.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let j = (*seed % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
}

/// A deviceId the schema accepts: 1-128 of `[A-Za-z0-9_.:-]`.
pub fn gen_device_id(u: &mut Unstructured<'_>) -> ArbResult<String> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-";
    let n = u.int_in_range(1..=128)?;
    (0..n)
        .map(|_| u.choose(CHARS).map(|&c| c as char))
        .collect()
}

/// The device id part of a key is everything before the first `#`, which a valid deviceId cannot hold.
pub fn check_key_form(key: &str, device_id: &str) {
    let rest = key
        .strip_prefix(device_id)
        .and_then(|r| r.strip_prefix('#'))
        .unwrap_or_else(|| {
            panic!("key {key:?} does not start with deviceId {device_id:?} and '#'")
        });
    let hex16 = |h: &str| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit());
    let ok = if let Some(seq) = rest.strip_prefix("seq:") {
        seq.parse::<u64>().is_ok_and(|n| n.to_string() == seq)
    } else if let Some(ts) = rest.strip_prefix("ts:") {
        ts.split_once(':')
            .is_some_and(|(ms, h)| ms.parse::<i64>().is_ok() && hex16(h))
    } else if let Some(h) = rest.strip_prefix("body:") {
        hex16(h)
    } else {
        false
    };
    assert!(ok, "key {key:?} has none of the three forms");
}

/// At most 400 bytes of a text for a panic message (bodies reach 128 KiB).
pub fn short(s: &str) -> String {
    let mut end = s.len().min(400);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end == s.len() {
        s.to_owned()
    } else {
        format!("{}...[{} bytes]", &s[..end], s.len())
    }
}

/// The JSON Pointer of the first place two values differ, with both values there.
pub fn first_diff(a: &Value, b: &Value) -> Option<String> {
    fn go(a: &Value, b: &Value, path: &mut String) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, v) in x {
                    let len = path.len();
                    path.push('/');
                    path.push_str(k);
                    let d = match y.get(k) {
                        Some(w) => go(v, w, path),
                        None => Some(format!("{}: missing on the right", short(path))),
                    };
                    path.truncate(len);
                    if d.is_some() {
                        return d;
                    }
                }
                (x.len() != y.len())
                    .then(|| format!("{}: {} vs {} keys", short(path), x.len(), y.len()))
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                x.iter().zip(y).enumerate().find_map(|(i, (v, w))| {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    let d = go(v, w, path);
                    path.truncate(len);
                    d
                })
            }
            _ if a == b => None,
            _ => Some(format!(
                "{}: {} vs {}",
                short(path),
                short(&a.to_string()),
                short(&b.to_string())
            )),
        }
    }
    go(a, b, &mut String::new())
}
