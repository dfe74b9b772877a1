//! events/schema/device-payload.v1.json and the Rust validator agree on every sample
//! in events/. Where they may differ is named: rules JSON Schema cannot state.

use std::path::Path;

use aws_lambda_events::sqs::SqsEvent;
use chrono::{DateTime, Utc};
use serde_json::Value;
use telemetry::{Rejection, parse_body, validate};

const SCHEMA: &str = include_str!("../../../events/schema/device-payload.v1.json");

/// Rules the schema documents in prose only (size in bytes, depth, a window relative to now),
/// plus seq above u64::MAX, which JSON Schema validators compare as f64.
const BEYOND_SCHEMA: [&str; 3] = ["max_bytes", "max_depth", "ts_in_future"];

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn events() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

/// Every body in events/: the iot payloads, the SQS batches' bodies and the bad inputs.
fn samples() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(events().join("iot")).unwrap() {
        let path = entry.unwrap().path();
        for (i, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
            out.push((format!("{}:{}", path.display(), i + 1), line.to_owned()));
        }
    }
    for entry in std::fs::read_dir(events().join("sqs")).unwrap() {
        let path = entry.unwrap().path();
        let event: SqsEvent =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (i, r) in event.records.into_iter().enumerate() {
            out.push((format!("{}#{i}", path.display()), r.body.unwrap()));
        }
    }
    for entry in std::fs::read_dir(events().join("bad")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "manifest.json" {
            out.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    out
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

#[test]
fn schema_and_validator_agree_on_every_sample() {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let samples = samples();
    assert!(samples.len() > 1_300, "{} samples", samples.len());
    let mut explained = 0;
    for (name, body) in &samples {
        let by_schema = schema_accepts(&validator, body);
        match (rust_verdict(body), by_schema) {
            (Ok(()), true) | (Err(_), false) => {}
            (Ok(()), false) => panic!("{name}: Rust accepts, the schema refuses"),
            (Err(r), true) => {
                let all_beyond = r
                    .violations()
                    .iter()
                    .all(|v| BEYOND_SCHEMA.contains(&v.rule.code()))
                    && !r.violations().is_empty();
                let seq_overflow = r.violations().iter().all(|v| v.path == "/seq");
                assert!(
                    all_beyond || seq_overflow,
                    "{name}: the schema accepts what Rust refuses: {r}"
                );
                explained += 1;
            }
        }
    }
    // The divergences are few and named: over 128 KiB, too deep, far future, seq over u64.
    assert!(explained <= 4, "{explained} samples differ");
}
