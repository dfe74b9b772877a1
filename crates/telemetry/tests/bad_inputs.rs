//! Every case of events/bad/manifest.json gets exactly the outcome, stage and
//! violations the manifest names, on both the first hop and the writer; every
//! boundary body of its `accepted` list passes both hops and becomes a document.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aws_lambda_events::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use telemetry::document::{Prepared, field};
use telemetry::{Rejection, decode_value, frame, validate};

const MANIFEST: &str = include_str!("../../../events/bad/manifest.json");

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

struct Case {
    file: String,
    outcome: String,
    /// "" for an accepted case.
    stage: String,
    violations: BTreeSet<(String, String)>,
    body: String,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/bad")
}

/// The refused bodies.
fn cases() -> Vec<Case> {
    list("cases")
}

/// The boundary bodies that must pass.
fn accepted() -> Vec<Case> {
    list("accepted")
}

fn list(name: &str) -> Vec<Case> {
    let manifest: Value = serde_json::from_str(MANIFEST).unwrap();
    let dir = dir();
    manifest[name]
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
                body: std::fs::read_to_string(dir.join(&file))
                    .unwrap_or_else(|e| panic!("{file}: {e}")),
                outcome: c["outcome"].as_str().unwrap().to_owned(),
                stage: c["stage"].as_str().unwrap_or_default().to_owned(),
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

/// A reason cut to a readable length (some paths hold 1000-character keys).
fn short(r: &Rejection) -> String {
    r.to_string().chars().take(300).collect()
}

fn now_plus(hours: i64) -> DateTime<Utc> {
    now() + chrono::TimeDelta::hours(hours)
}

#[test]
fn there_are_at_least_forty_bad_inputs() {
    assert!(cases().len() >= 90, "{} cases", cases().len());
    assert!(accepted().len() >= 20, "{} accepted", accepted().len());
}

/// Every file of events/bad is in the manifest exactly once, with the outcome its list implies.
#[test]
fn every_file_is_listed_once_and_numbered_uniquely() {
    let listed: Vec<String> = cases()
        .iter()
        .chain(&accepted())
        .map(|c| c.file.clone())
        .collect();
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "a file is listed twice");
    let numbers: BTreeSet<&str> = listed
        .iter()
        .map(|f| f.split('-').next().unwrap())
        .collect();
    assert_eq!(numbers.len(), listed.len(), "two files share a number");
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f != "manifest.json")
        .collect();
    assert_eq!(
        on_disk,
        listed.iter().cloned().collect(),
        "files and manifest differ"
    );
    for c in cases() {
        assert!(
            ["unparseable", "invalid"].contains(&c.outcome.as_str())
                && ["sqs-to-kafka", "kafka-to-mongo"].contains(&c.stage.as_str()),
            "{}: outcome {:?}, stage {:?}",
            c.file,
            c.outcome,
            c.stage
        );
        assert_eq!(
            c.outcome == "invalid",
            !c.violations.is_empty(),
            "{}",
            c.file
        );
    }
    for c in accepted() {
        assert_eq!(c.outcome, "accepted", "{}", c.file);
        assert!(c.stage.is_empty() && c.violations.is_empty(), "{}", c.file);
    }
}

/// Every mismatch of every case, so that one run names all of them.
#[test]
fn every_bad_input_is_refused_at_its_stage_with_exactly_its_violations() {
    let mut failures = Vec::new();
    for case in cases() {
        let refusal = match frame(&case.body) {
            Err(r) => {
                if case.stage != "sqs-to-kafka" {
                    failures.push(format!(
                        "{}: the first hop refused it: {}",
                        case.file,
                        short(&r)
                    ));
                    continue;
                }
                r
            }
            Ok(framed) => {
                if case.stage != "kafka-to-mongo" {
                    failures.push(format!("{}: the first hop let it through", case.file));
                    continue;
                }
                let p = framed.parsed;
                match validate(p.object, &p.non_finite, now()) {
                    Err(r) => r,
                    Ok(_) => {
                        failures.push(format!("{}: the writer accepted it", case.file));
                        continue;
                    }
                }
            }
        };
        if refusal.kind() != case.outcome || found(&refusal) != case.violations {
            failures.push(format!(
                "{}: expected {} {:?}, got {} {:?}: {}",
                case.file,
                case.outcome,
                case.violations,
                refusal.kind(),
                found(&refusal),
                short(&refusal)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The writer sees the message only through the Kafka envelope: nothing may be lost on the way
/// (NaN in particular is not JSON, so it travels as a list of paths).
#[test]
fn the_writer_sees_the_same_violations_through_the_kafka_envelope() {
    let mut msg = SqsMessage::default();
    msg.message_id = Some("m-1".into());
    let mut failures = Vec::new();
    for case in cases().into_iter().filter(|c| c.stage == "kafka-to-mongo") {
        let Ok(framed) = frame(&case.body) else {
            continue; // reported by the test above
        };
        let record = framed.into_kafka_record(&msg);
        match telemetry::accept(&record.value, now()) {
            Ok(_) => failures.push(format!("{}: the writer accepted the envelope", case.file)),
            Err(r) if r.kind() != case.outcome || found(&r) != case.violations => {
                failures.push(format!(
                    "{}: expected {} {:?} through the envelope, got {} {:?}: {}",
                    case.file,
                    case.outcome,
                    case.violations,
                    r.kind(),
                    found(&r),
                    short(&r)
                ));
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A boundary body passes the first hop, then the writer through the Kafka envelope, with the
/// key the first hop computed, and becomes a document whose `_id` is that key.
#[test]
fn every_accepted_boundary_passes_both_hops_and_becomes_a_document() {
    let mut msg = SqsMessage::default();
    msg.message_id = Some("m-1".into());
    let mut failures = Vec::new();
    for case in accepted() {
        let framed = match frame(&case.body) {
            Ok(f) => f,
            Err(r) => {
                failures.push(format!(
                    "{}: the first hop refused it: {}",
                    case.file,
                    short(&r)
                ));
                continue;
            }
        };
        let p = framed.parsed.clone();
        if let Err(r) = validate(p.object, &p.non_finite, now()) {
            failures.push(format!("{}: validate refused it: {}", case.file, short(&r)));
            continue;
        }
        let key = framed.key.clone();
        let first_readings = framed.parsed.object.get("readings").cloned();
        let record = framed.into_kafka_record(&msg);
        let (writer_key, telemetry) = match telemetry::accept(&record.value, now()) {
            Ok(x) => x,
            Err(r) => {
                failures.push(format!(
                    "{}: the writer refused it through the Kafka envelope ({} bytes): {}",
                    case.file,
                    record.value.len(),
                    short(&r)
                ));
                continue;
            }
        };
        if writer_key != key {
            failures.push(format!(
                "{}: the writer keys it {writer_key}, the first hop {key}",
                case.file
            ));
        }
        if first_readings != Some(Value::Object(telemetry.readings.clone())) {
            failures.push(format!(
                "{}: readings changed on the way: {:?} became {:?}",
                case.file, first_readings, telemetry.readings
            ));
        }
        let prepared = Prepared::new(writer_key.clone(), &telemetry, now())
            .unwrap_or_else(|v| panic!("{}: no document: {v}", case.file));
        assert_eq!(
            prepared.doc.get_str(field::ID).unwrap(),
            writer_key,
            "{}: _id",
            case.file
        );
        assert_eq!(
            prepared.doc.get_str(field::DEVICE_ID).unwrap(),
            telemetry.device_id,
            "{}",
            case.file
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A skew of exactly 24 h passes and one more millisecond does not, whatever the clock.
#[test]
fn the_future_bound_moves_with_the_clock() {
    let body = r#"{"deviceId":"d-1","ts":"2026-06-02T00:00:00Z","readings":{}}"#;
    let p = frame(body).unwrap().parsed;
    assert!(validate(p.object.clone(), &[], now_plus(0)).is_ok());
    let r = validate(p.object, &[], now_plus(-1)).unwrap_err();
    assert_eq!(
        found(&r),
        [("/ts".to_owned(), "ts_in_future".to_owned())].into()
    );
}

/// The writer trusts nothing in an envelope but its body: a forged key or deviceId is recomputed.
#[test]
fn an_envelope_with_a_forged_key_gets_the_key_of_its_body() {
    let body = json!({"deviceId": "thermo-0001", "seq": 7, "ts": "2026-01-01T00:00:00Z", "readings": {"t": 1}});
    let envelope = json!({
        "schemaVersion": 1,
        "idempotencyKey": "victim-0001#seq:1",
        "deviceId": "victim-0001",
        "body": body,
    });
    let value = envelope.to_string();
    let (key, t) = telemetry::accept(value.as_bytes(), now()).unwrap();
    assert_eq!(key, "thermo-0001#seq:7");
    assert_eq!(t.device_id, "thermo-0001");
    let decoded = decode_value(value.as_bytes()).unwrap();
    assert_eq!(decoded.idempotency_key, "thermo-0001#seq:7");
    assert_eq!(decoded.device_id, "thermo-0001");
    // Exactly the key the first hop gives the same body.
    assert_eq!(frame(&body.to_string()).unwrap().key, key);

    // Without seq the key hashes the readings: the forged key cannot alias another message.
    let mut no_seq = envelope.clone();
    no_seq["body"].as_object_mut().unwrap().remove("seq");
    no_seq["idempotencyKey"] = json!("thermo-0001#seq:7");
    let (key, _) = telemetry::accept(no_seq.to_string().as_bytes(), now()).unwrap();
    assert!(key.starts_with("thermo-0001#ts:1767225600000:"), "{key}");
}

/// An envelope whose `body` is not an object is refused, naming `body`.
#[test]
fn an_envelope_whose_body_is_an_array_is_refused_naming_body() {
    for body in [
        json!([{"deviceId": "thermo-0001"}]),
        json!("{}"),
        Value::Null,
    ] {
        let value = json!({
            "schemaVersion": 1,
            "idempotencyKey": "thermo-0001#seq:7",
            "deviceId": "thermo-0001",
            "body": body,
        })
        .to_string();
        let err = decode_value(value.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), "unparseable", "{body}: {err}");
        assert!(
            err.to_string().contains("`body` must be an object"),
            "{body}: {err}"
        );
        let err = telemetry::accept(value.as_bytes(), now()).unwrap_err();
        assert!(err.to_string().contains("`body`"), "{body}: {err}");
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
