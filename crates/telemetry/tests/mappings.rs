//! SQS record -> Kafka record -> MongoDB document, and the idempotency key, on the committed fixtures.

use std::collections::HashSet;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use bson::raw::RawDocumentBuf;
use bson::{Bson, Document};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use telemetry::document::{field, to_document};
use telemetry::envelope::header;
use telemetry::sample::{DEFAULT_START_MS, Generator, fixture_set, rule_body};
use telemetry::{accept, frame, idempotency_key};

const VALID_10: &str = include_str!("../../../events/sqs/valid-batch-10.json");
const BASE64_10: &str = include_str!("../../../events/sqs/base64-batch.json");
const DUPLICATE: &str = include_str!("../../../events/sqs/duplicate-different-ids.json");
const MIXED: &str = include_str!("../../../events/sqs/mixed-batch.json");
const BATCH_100: &str = include_str!("../../../events/sqs/batch-100.json");
const IOT: &str = include_str!("../../../events/iot/devices-20-seed-1.jsonl");

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn plain(raw: RawDocumentBuf) -> Document {
    Document::try_from(raw).unwrap()
}

fn event(json: &str) -> SqsEvent {
    serde_json::from_str(json).unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn key_of(body: &str) -> String {
    frame(body).unwrap().key
}

#[test]
fn committed_fixtures_equal_the_generator_output() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    for (path, expected) in fixture_set() {
        let committed = std::fs::read_to_string(root.join(&path)).unwrap();
        assert!(
            committed == expected,
            "events/{path} differs from `bridgectl generate fixtures`"
        );
    }
}

#[test]
fn iot_sample_has_20_devices_gaps_out_of_order_and_only_valid_messages() {
    let lines: Vec<Map<String, Value>> = IOT
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 1_000);
    let devices: HashSet<&str> = lines
        .iter()
        .map(|m| m["deviceId"].as_str().unwrap())
        .collect();
    assert!(devices.len() >= 20, "{} devices", devices.len());
    let mut last_seq = std::collections::HashMap::new();
    let (mut out_of_order, mut without_seq) = (0, 0);
    for m in &lines {
        match m.get("seq").and_then(Value::as_u64) {
            Some(seq) => {
                let prev = last_seq
                    .insert(m["deviceId"].as_str().unwrap(), seq)
                    .unwrap_or(0);
                out_of_order += usize::from(seq < prev);
            }
            None => without_seq += 1,
        }
        validate_ok(m.clone());
    }
    assert!(out_of_order > 10, "{out_of_order} out-of-order messages");
    assert!(without_seq > 50, "{without_seq} messages without seq");
    let missing = lines
        .iter()
        .filter(|m| m["readings"].as_object().unwrap().len() < 3)
        .count();
    assert!(missing > 20, "{missing} messages with a reading missing");
    let keys: HashSet<String> = lines
        .iter()
        .map(|m| idempotency_key(m["deviceId"].as_str().unwrap(), m))
        .collect();
    assert_eq!(
        keys.len(),
        lines.len(),
        "different messages must get different keys"
    );
}

fn validate_ok(m: Map<String, Value>) {
    telemetry::validate(m, &[], now()).unwrap();
}

#[test]
fn generator_is_deterministic_and_seed_dependent() {
    let a: Vec<_> = Generator::new(5, 7, DEFAULT_START_MS).take(50).collect();
    let b: Vec<_> = Generator::new(5, 7, DEFAULT_START_MS).take(50).collect();
    let c: Vec<_> = Generator::new(5, 8, DEFAULT_START_MS).take(50).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn key_uses_seq_when_present() {
    let m =
        obj(json!({"deviceId": "d-1", "seq": 42, "ts": 1767225600000i64, "readings": {"t": 1}}));
    assert_eq!(idempotency_key("d-1", &m), "d-1#seq:42");
}

#[test]
fn key_without_seq_uses_ts_and_a_canonical_readings_hash() {
    let a = obj(
        json!({"deviceId": "d-1", "ts": "2026-01-01T00:00:00Z", "readings": {"t": 1.5, "h": 40}}),
    );
    let b =
        obj(json!({"deviceId": "d-1", "ts": 1767225600000i64, "readings": {"h": 40, "t": 1.5}}));
    let c =
        obj(json!({"deviceId": "d-1", "ts": 1767225600000i64, "readings": {"h": 41, "t": 1.5}}));
    let d =
        obj(json!({"deviceId": "d-1", "ts": 1767225600001i64, "readings": {"h": 40, "t": 1.5}}));
    let ka = idempotency_key("d-1", &a);
    assert!(ka.starts_with("d-1#ts:1767225600000:"), "{ka}");
    assert_eq!(
        ka,
        idempotency_key("d-1", &b),
        "same instant and readings in another order and form"
    );
    assert_ne!(ka, idempotency_key("d-1", &c), "different readings");
    assert_ne!(ka, idempotency_key("d-1", &d), "different ts");
    assert_ne!(ka, idempotency_key("d-2", &a), "different device");
}

#[test]
fn key_ignores_the_fields_the_iot_rule_adds() {
    let payload = obj(json!({"deviceId": "d-1", "ts": "garbage", "readings": {"t": 1}}));
    let first = rule_body(&payload, 1_000);
    let redelivered = rule_body(&payload, 9_000);
    assert_eq!(
        idempotency_key("d-1", &first),
        idempotency_key("d-1", &redelivered)
    );
    assert!(idempotency_key("d-1", &first).starts_with("d-1#body:"));
}

#[test]
fn the_same_message_gets_the_same_key_raw_base64_and_redelivered() {
    let dup = event(DUPLICATE);
    let ids: HashSet<_> = dup.records.iter().map(|r| r.message_id.clone()).collect();
    assert_eq!(ids.len(), 2, "two SQS ids");
    let keys: HashSet<_> = dup
        .records
        .iter()
        .map(|r| key_of(r.body.as_deref().unwrap()))
        .collect();
    assert_eq!(keys.len(), 1, "one key: {keys:?}");

    use base64::Engine as _;
    for r in event(BASE64_10).records {
        let b64 = r.body.unwrap();
        let raw = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&b64)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(key_of(&b64), key_of(&raw));
    }
}

#[test]
fn sqs_record_maps_to_a_keyed_kafka_record_with_traceable_headers() {
    for r in event(VALID_10).records {
        let framed = frame(r.body.as_deref().unwrap()).unwrap();
        let key = framed.key.clone();
        let body: Map<String, Value> = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        let rec = framed.into_kafka_record(&r);
        assert_eq!(rec.key, body["deviceId"]);
        assert_eq!(rec.header(header::IDEMPOTENCY_KEY), Some(key.as_str()));
        assert_eq!(rec.header(header::SQS_MESSAGE_ID), r.message_id.as_deref());
        assert_eq!(rec.header(header::SQS_RECEIVE_COUNT), Some("1"));
        assert_eq!(rec.header(header::MQTT_TOPIC), body["mqtt_topic"].as_str());
        assert_eq!(
            rec.header(header::RECEIVED_AT),
            Some(body["received_at"].to_string().as_str())
        );
        assert_eq!(rec.header(header::CONTENT_TYPE), Some("application/json"));
        assert_eq!(rec.header(header::SCHEMA_VERSION), Some("1"));
        assert!(rec.header(header::TRACE).unwrap().starts_with("Root=1-"));
        let envelope: Value = serde_json::from_slice(&rec.value).unwrap();
        assert_eq!(envelope["schemaVersion"], 1);
        assert_eq!(envelope["idempotencyKey"], key.as_str());
        assert_eq!(envelope["sqsMessageId"], r.message_id.as_deref().unwrap());
        assert_eq!(envelope["body"], Value::Object(body));
        assert!(envelope.get("nonFinitePaths").is_none());
    }
}

#[test]
fn a_record_without_trace_or_rule_fields_gets_only_the_headers_it_can_fill() {
    let mut msg = SqsMessage::default();
    msg.message_id = Some("m-1".into());
    let rec = frame(r#"{"deviceId":"d-1","ts":1767225600000,"readings":{}}"#)
        .unwrap()
        .into_kafka_record(&msg);
    assert_eq!(rec.header(header::TRACE), None);
    assert_eq!(rec.header(header::MQTT_TOPIC), None);
    assert_eq!(rec.header(header::SQS_MESSAGE_ID), Some("m-1"));
}

#[test]
fn kafka_record_maps_to_a_mongo_document_keyed_by_the_idempotency_key() {
    let r = &event(VALID_10).records[0];
    let framed = frame(r.body.as_deref().unwrap()).unwrap();
    let key = framed.key.clone();
    let rec = framed.into_kafka_record(r);
    let (accepted_key, t) = accept(&rec.value, now()).unwrap();
    assert_eq!(accepted_key, key);
    let doc = plain(to_document(&accepted_key, &t, now()).unwrap());
    assert_eq!(doc.get_str(field::ID).unwrap(), key);
    assert_eq!(doc.get_str(field::DEVICE_ID).unwrap(), t.device_id);
    assert_eq!(
        doc.get_datetime(field::TS).unwrap().timestamp_millis(),
        t.ts.timestamp_millis()
    );
    assert_eq!(
        doc.get_datetime(field::INGESTED_AT)
            .unwrap()
            .timestamp_millis(),
        now().timestamp_millis()
    );
    assert!(matches!(
        doc.get(field::RECEIVED_AT),
        Some(Bson::DateTime(_))
    ));
    assert_eq!(
        doc.get_str(field::TOPIC).unwrap(),
        format!("devices/{}/telemetry", t.device_id)
    );
    assert_eq!(
        doc.get_document(field::READINGS).unwrap().len(),
        t.readings.len()
    );
}

#[test]
fn a_key_bson_cannot_hold_is_a_violation_naming_its_path_not_a_panic() {
    // Validation rejects NUL in keys; a Telemetry built by hand gets the same answer.
    let body = r#"{"deviceId":"m-1","seq":5,"ts":1767225600000,"readings":{"t":1},"meta":{"a":{"list":[1,{"ok":2}]}}}"#;
    let (key, mut t) = accept(body.as_bytes(), now()).unwrap();
    let inner = json!({"list": [1, {"b\u{0}d": 2}]});
    t.meta.as_mut().unwrap().insert("a/x".into(), inner);
    let violation = to_document(&key, &t, now()).unwrap_err();
    assert_eq!(violation.path, "/meta/a~1x/list/1/b\u{0}d");
    assert_eq!(violation.rule, telemetry::Rule::ReservedKey);

    let (_, mut t) = accept(body.as_bytes(), now()).unwrap();
    t.extra.insert("nul\u{0}".into(), json!(1));
    assert_eq!(to_document(&key, &t, now()).unwrap_err().path, "/nul\u{0}");
}

#[test]
fn unknown_fields_are_kept_under_extra_and_seq_is_an_int64() {
    let body = r#"{"deviceId":"m-1","seq":5,"ts":1767225600000,"readings":{"p":1,"on":true,"s":"ok"},"site":"plant-a","meta":{"fw":"1"}}"#;
    let (key, t) = accept(body.as_bytes(), now()).unwrap();
    let doc = plain(to_document(&key, &t, now()).unwrap());
    assert_eq!(
        doc.get_document(field::EXTRA)
            .unwrap()
            .get_str("site")
            .unwrap(),
        "plant-a"
    );
    assert_eq!(doc.get_i64(field::SEQ).unwrap(), 5);
    assert_eq!(
        doc.get_document(field::META)
            .unwrap()
            .get_str("fw")
            .unwrap(),
        "1"
    );
    let readings = doc.get_document(field::READINGS).unwrap();
    assert_eq!(readings.get_i64("p").unwrap(), 1);
    assert!(readings.get_bool("on").unwrap());
}

#[test]
fn every_fixture_batch_frames_as_expected() {
    for json in [VALID_10, BASE64_10, BATCH_100, DUPLICATE] {
        for r in event(json).records {
            let framed = frame(r.body.as_deref().unwrap()).unwrap();
            let rec = framed.into_kafka_record(&r);
            accept(&rec.value, now()).unwrap();
        }
    }
    assert_eq!(event(BATCH_100).records.len(), 100);
    assert_eq!(event(VALID_10).records.len(), 10);
    let mixed = event(MIXED);
    let framed = mixed
        .records
        .iter()
        .filter(|r| frame(r.body.as_deref().unwrap()).is_ok())
        .count();
    let stored = mixed
        .records
        .iter()
        .filter_map(|r| {
            frame(r.body.as_deref().unwrap())
                .ok()
                .map(|f| f.into_kafka_record(r))
        })
        .filter(|rec| accept(&rec.value, now()).is_ok())
        .count();
    assert_eq!(
        (mixed.records.len(), framed, stored),
        (10, 8, 6),
        "total, framed by the Lambda, stored by the writer"
    );
}
