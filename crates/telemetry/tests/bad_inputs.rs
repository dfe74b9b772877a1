//! Every case of events/bad/manifest.json gets exactly the outcome, stage and
//! violations the manifest names, on both the first hop and the writer.

use std::collections::BTreeSet;
use std::path::Path;

use aws_lambda_events::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use serde_json::Value;
use telemetry::{Rejection, frame, validate};

const MANIFEST: &str = include_str!("../../../events/bad/manifest.json");

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

struct Case {
    file: String,
    outcome: String,
    stage: String,
    violations: BTreeSet<(String, String)>,
    body: String,
}

fn cases() -> Vec<Case> {
    let manifest: Value = serde_json::from_str(MANIFEST).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/bad");
    manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let file = c["file"].as_str().unwrap().to_owned();
            let violations = c["violations"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .map(|v| {
                            (
                                v["path"].as_str().unwrap().to_owned(),
                                v["rule"].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Case {
                body: std::fs::read_to_string(dir.join(&file)).unwrap(),
                outcome: c["outcome"].as_str().unwrap().to_owned(),
                stage: c["stage"].as_str().unwrap().to_owned(),
                violations,
                file,
            }
        })
        .collect()
}

fn found(r: &Rejection) -> BTreeSet<(String, String)> {
    r.violations()
        .iter()
        .map(|v| (v.path.clone(), v.rule.code().to_owned()))
        .collect()
}

#[test]
fn there_are_at_least_forty_bad_inputs() {
    assert!(cases().len() >= 40, "{} cases", cases().len());
}

#[test]
fn every_bad_input_is_refused_at_its_stage_with_exactly_its_violations() {
    for case in cases() {
        let refusal = match frame(&case.body) {
            Err(r) => {
                assert_eq!(
                    case.stage, "sqs-to-kafka",
                    "{}: the first hop refused it: {r}",
                    case.file
                );
                r
            }
            Ok(framed) => {
                assert_eq!(
                    case.stage, "kafka-to-mongo",
                    "{}: the first hop let it through",
                    case.file
                );
                let p = framed.parsed;
                validate(p.object, &p.non_finite, now())
                    .expect_err(&format!("{}: the writer accepted it", case.file))
            }
        };
        assert_eq!(refusal.kind(), case.outcome, "{}: {refusal}", case.file);
        assert_eq!(found(&refusal), case.violations, "{}: {refusal}", case.file);
    }
}

/// The writer sees the message only through the Kafka envelope: nothing may be lost on the way
/// (NaN in particular is not JSON, so it travels as a list of paths).
#[test]
fn the_writer_sees_the_same_violations_through_the_kafka_envelope() {
    let mut msg = SqsMessage::default();
    msg.message_id = Some("m-1".into());
    for case in cases().into_iter().filter(|c| c.stage == "kafka-to-mongo") {
        let record = frame(&case.body).unwrap().into_kafka_record(&msg);
        let refusal = telemetry::accept(&record.value, now()).expect_err(&case.file);
        assert_eq!(found(&refusal), case.violations, "{}: {refusal}", case.file);
    }
}

#[test]
fn every_rule_has_at_least_one_bad_input() {
    let covered: BTreeSet<String> = cases()
        .iter()
        .flat_map(|c| c.violations.iter().map(|v| v.1.clone()))
        .collect();
    for rule in [
        "required",
        "type",
        "device_id_format",
        "max_length",
        "max_entries",
        "non_finite",
        "reserved_key",
        "max_depth",
        "max_bytes",
        "ts_format",
        "ts_in_future",
        "ts_too_old",
    ] {
        assert!(covered.contains(rule), "no bad input breaks rule {rule}");
    }
    let unparseable = cases()
        .iter()
        .filter(|c| c.outcome == "unparseable")
        .count();
    assert!(unparseable >= 5, "unparseable cases: {unparseable}");
}

#[test]
fn reasons_name_the_field_and_the_rule() {
    let body = r#"{"deviceId":"d-1","seq":1,"ts":"2026-01-01T00:00:00Z","readings":{"t":NaN,"$where":"1"}}"#;
    let p = frame(body).unwrap().parsed;
    let reason = validate(p.object, &p.non_finite, now())
        .unwrap_err()
        .to_string();
    assert!(
        reason.contains("/readings/t: must be a finite number"),
        "{reason}"
    );
    assert!(
        reason.contains("/readings/$where: key must not start with '$'"),
        "{reason}"
    );
}
