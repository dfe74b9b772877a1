//! events/schema/device-payload.v1.json and the Rust validator agree on every sample
//! in events/, except the samples named in [`DIVERGENCES`]: each with the direction it
//! differs in, the rules Rust reports, and why the schema cannot say the same. A divergence
//! not in the list fails, and so does a listed sample that no longer differs, so the list
//! cannot rot. A rule the schema can state belongs in the schema, not in the list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_lambda_events::sqs::SqsEvent;
use chrono::{DateTime, Utc};
use serde_json::Value;
use telemetry::{Rejection, parse_body, validate};

const SCHEMA: &str = include_str!("../../../events/schema/device-payload.v1.json");

/// How the two verdicts on one sample differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Differs {
    /// The schema accepts the body; Rust refuses it with exactly these rule codes
    /// (sorted; "unparseable" when Rust cannot read it at all).
    RustRefuses(&'static [&'static str]),
    /// Rust accepts the body; the schema refuses it.
    SchemaRefuses,
}

use Differs::RustRefuses;

/// The samples (named relative to events/) where the schema and Rust differ, with any
/// validator that asserts `format`, and why: rules JSON Schema cannot state.
const DIVERGENCES: &[(&str, Differs, &str)] = &[
    (
        "bad/18-over-128-kib.json",
        RustRefuses(&["max_bytes"]),
        "the 131072-byte limit is on the text; JSON Schema sees only the decoded value",
    ),
    (
        "bad/56-over-128-kib-by-one-byte.json",
        RustRefuses(&["max_bytes"]),
        "the 131072-byte limit is on the text; JSON Schema sees only the decoded value",
    ),
    (
        "bad/24-ts-far-future.json",
        RustRefuses(&["ts_in_future"]),
        "24 h ahead of the bridge clock: a bound relative to now (the schema's static bound is year 9999)",
    ),
    (
        "bad/109-ts-1-ms-past-24h.json",
        RustRefuses(&["ts_in_future"]),
        "24 h ahead of the bridge clock: a bound relative to now",
    ),
    (
        "bad/110-ts-epoch-ms-1-ms-past-24h.json",
        RustRefuses(&["ts_in_future"]),
        "24 h ahead of the bridge clock: a bound relative to now",
    ),
    (
        "bad/108-ts-2000-with-positive-offset.json",
        RustRefuses(&["ts_too_old"]),
        "the 2000 bound is on the instant: a pattern sees the written year, and subtracting \
         the offset from the time of day is arithmetic no pattern or format does",
    ),
    (
        "bad/100-seq-exponent-notation.json",
        RustRefuses(&["type"]),
        "JSON Schema's integer is any number with a zero fraction, 7e0 included; the bridge \
         reads the text, where an exponent makes a float",
    ),
];

/// The further samples that differ when `format` is an annotation only (the 2020-12
/// default, and what many validators do): the pattern states the shape of an RFC 3339
/// date-time, not the calendar.
const FORMAT_ONLY: &[(&str, Differs, &str)] = &[
    (
        "bad/113-ts-february-30.json",
        RustRefuses(&["ts_format"]),
        "the days of each month (and leap years) are the format's, not the pattern's",
    ),
    (
        "bad/115-ts-leap-second-not-at-end-of-day.json",
        RustRefuses(&["ts_format"]),
        "second 60 only at 23:59:60 UTC needs the offset applied: the format's, not the pattern's",
    ),
];

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn events() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

fn name(path: &Path) -> String {
    path.strip_prefix(events()).unwrap().display().to_string()
}

/// Every body in events/: the iot payloads, the SQS batches' bodies and the bad inputs.
fn samples() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(events().join("iot")).unwrap() {
        let path = entry.unwrap().path();
        for (i, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
            out.push((format!("{}:{}", name(&path), i + 1), line.to_owned()));
        }
    }
    for entry in std::fs::read_dir(events().join("sqs")).unwrap() {
        let path = entry.unwrap().path();
        let event: SqsEvent =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (i, r) in event.records.into_iter().enumerate() {
            out.push((format!("{}#{i}", name(&path)), r.body.unwrap()));
        }
    }
    for entry in std::fs::read_dir(events().join("bad")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "manifest.json" {
            out.push((name(&path), std::fs::read_to_string(&path).unwrap()));
        }
    }
    out.sort();
    out
}

fn validator(assert_formats: bool) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    jsonschema::options()
        .should_validate_formats(assert_formats)
        .build(&schema)
        .unwrap()
}

/// The schema's verdict on the decoded body text: text that is not JSON fails it.
fn schema_accepts(validator: &jsonschema::Validator, body: &str) -> bool {
    use base64::Engine as _;
    let trimmed = body.trim();
    let text = match trimmed.starts_with(['{', '[', '"']) {
        true => trimmed.to_owned(),
        false => match base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .map(String::from_utf8)
        {
            Ok(Ok(t)) => t,
            _ => return false,
        },
    };
    serde_json::from_str::<Value>(&text).is_ok_and(|v| validator.is_valid(&v))
}

fn rust_verdict(body: &str) -> Result<(), Rejection> {
    let p = parse_body(body)?;
    validate(p.object, &p.non_finite, now()).map(drop)
}

/// The rule codes of a refusal, sorted; "unparseable" for a body Rust cannot read.
fn codes(r: &Rejection) -> Vec<&'static str> {
    let mut codes: Vec<_> = r.violations().iter().map(|v| v.rule.code()).collect();
    if codes.is_empty() {
        codes.push(r.kind());
    }
    codes.sort_unstable();
    codes
}

/// Checks every sample against `expected`: the divergences found are exactly the listed
/// ones, each in its direction with its rules. Reports every mismatch, not the first.
fn assert_only_named_divergences(
    validator: &jsonschema::Validator,
    expected: &[&(&'static str, Differs, &'static str)],
) {
    let samples = samples();
    assert!(samples.len() > 1_300, "{} samples", samples.len());
    let mut listed: BTreeMap<&str, Differs> = BTreeMap::new();
    for &&(file, differs, why) in expected {
        assert!(!why.is_empty(), "{file}: say why it differs");
        assert!(
            listed.insert(file, differs).is_none(),
            "{file} is listed twice"
        );
    }
    let mut problems = Vec::new();
    for (name, body) in &samples {
        let found = match (rust_verdict(body), schema_accepts(validator, body)) {
            (Ok(()), true) | (Err(_), false) => None,
            (Ok(()), false) => Some((Differs::SchemaRefuses, String::new())),
            (Err(r), true) => {
                let codes = codes(&r);
                let text = format!("({r})");
                Some((RustRefuses(codes.leak()), text))
            }
        };
        match (found, listed.remove(name.as_str())) {
            (None, None) => {}
            (Some((found, _)), Some(expected)) if found == expected => {}
            (Some((found, detail)), None) => {
                problems.push(format!("{name}: not listed, differs: {found:?} {detail}"));
            }
            (Some((found, detail)), Some(expected)) => problems.push(format!(
                "{name}: listed as {expected:?}, differs as {found:?} {detail}"
            )),
            (None, Some(expected)) => {
                problems.push(format!("{name}: listed as {expected:?}, but both agree"));
            }
        }
    }
    for (file, expected) in listed {
        problems.push(format!(
            "{file}: listed as {expected:?}, but there is no such sample"
        ));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn schema_and_validator_differ_only_where_named() {
    assert_only_named_divergences(&validator(true), &DIVERGENCES.iter().collect::<Vec<_>>());
}

/// A validator that treats `format` as an annotation reads ts by the pattern alone.
#[test]
fn without_format_assertion_the_pattern_leaves_only_calendar_rules_unsaid() {
    let expected: Vec<_> = DIVERGENCES.iter().chain(FORMAT_ONLY).collect();
    assert_only_named_divergences(&validator(false), &expected);
}

/// The schema's numbers are the validator's: bounds a test of samples only meets at the
/// cases someone thought to write.
#[test]
fn the_schema_states_the_validators_bounds() {
    use telemetry::validate::{MAX_DEPTH, MAX_READING_CHARS, MAX_READINGS, MIN_TS_MILLIS};
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let props = &schema["properties"];
    assert_eq!(props["ts"]["oneOf"][1]["minimum"], MIN_TS_MILLIS);
    let ts_max = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999Z").unwrap();
    assert_eq!(
        props["ts"]["oneOf"][1]["maximum"],
        ts_max.timestamp_millis()
    );
    assert_eq!(props["seq"]["maximum"], u64::MAX);
    assert_eq!(props["readings"]["maxProperties"], MAX_READINGS);
    assert_eq!(
        props["readings"]["additionalProperties"]["oneOf"][2]["maxLength"],
        MAX_READING_CHARS
    );
    // received_at must be an instant chrono represents (DateTime::from_timestamp_millis).
    assert_eq!(
        props["received_at"]["minimum"],
        DateTime::<Utc>::MIN_UTC.timestamp_millis()
    );
    assert_eq!(
        props["received_at"]["maximum"],
        DateTime::<Utc>::MAX_UTC.timestamp_millis()
    );
    // level1 .. level{MAX_DEPTH}, the last holding no object or array.
    let defs = &schema["$defs"];
    for level in 1..MAX_DEPTH {
        let next = format!("#/$defs/level{}", level + 1);
        for k in ["additionalProperties", "items"] {
            assert_eq!(
                defs[format!("level{level}")][k]["$ref"],
                next,
                "level{level}"
            );
        }
    }
    for k in ["additionalProperties", "items"] {
        assert_eq!(
            defs[format!("level{MAX_DEPTH}")][k]["not"]["type"],
            serde_json::json!(["object", "array"])
        );
    }
    assert!(defs[format!("level{}", MAX_DEPTH + 1)].is_null());
}
