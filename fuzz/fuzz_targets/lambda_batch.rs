//! A Lambda SQS event, any bytes, routed record by record as the first hop does. Invariants:
//! - one routed record per SQS record, in order;
//! - telemetry: keyed by the envelope's deviceId, `idempotency-key` header = the envelope's
//!   `idempotencyKey`, and the writer's `decode_value` reads the same key and deviceId back;
//! - dead letter: `dlq-reason`, `dlq-kind`, `dlq-stage` = sqs-to-kafka, `dlq-violations` a
//!   JSON array of at most 8 KiB (+ a little), value = the original body bytes, untouched;
//! - both: the SQS message id and a well-formed redrive mark ride along as headers.
#![no_main]

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use iot_bridge_fuzz::{check_key_form, check_rejection};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use telemetry::envelope::header;
use telemetry::redrive::Mark;
use telemetry::route::{Routed, route_event};
use telemetry::{KafkaRecord, decode_value, frame};

const MAX_HEADER: usize = 8 * 1024 + 64;

fn carried(msg: &SqsMessage, record: &KafkaRecord) {
    assert_eq!(
        record.header(header::SQS_MESSAGE_ID),
        msg.message_id.as_deref()
    );
    let mark = Mark::read(|n| {
        msg.message_attributes
            .get(n)
            .and_then(|a| a.string_value.as_deref())
    });
    match mark {
        Some(m) => {
            for (name, value) in m.headers() {
                assert_eq!(record.header(name), Some(value.as_str()), "{name}");
            }
        }
        None => {
            assert_eq!(record.header(header::REDRIVE_ORIGIN), None);
            assert_eq!(record.header(header::REDRIVE_COUNT), None);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<SqsEvent>(data) else {
        return;
    };
    let routed = route_event(&event);
    assert_eq!(
        routed.len(),
        event.records.len(),
        "one routed record per SQS record"
    );
    for (msg, r) in event.records.iter().zip(&routed) {
        assert_eq!(r, &telemetry::route(msg), "routed out of order");
        let body = msg.body.as_deref().unwrap_or_default();
        match r {
            Routed::Telemetry(record) => {
                let envelope: Value =
                    serde_json::from_slice(&record.value).expect("envelope is JSON");
                assert_eq!(envelope["deviceId"].as_str(), Some(record.key.as_str()));
                assert_eq!(
                    envelope["body"]["deviceId"].as_str(),
                    Some(record.key.as_str())
                );
                let key = envelope["idempotencyKey"].as_str().expect("idempotencyKey");
                assert_eq!(record.header(header::IDEMPOTENCY_KEY), Some(key));
                check_key_form(key, &record.key);
                assert_eq!(record.header(header::SCHEMA_VERSION), Some("1"));
                assert_eq!(envelope["sqsMessageId"].as_str(), msg.message_id.as_deref());
                for name in [header::DLQ_REASON, header::DLQ_KIND, header::DLQ_STAGE] {
                    assert_eq!(record.header(name), None, "{name} on a telemetry record");
                }
                carried(msg, record);
                let env = match decode_value(&record.value) {
                    Ok(env) => env,
                    Err(e) => panic!(
                        "the writer refuses what the Lambda produced ({} bytes): {e}",
                        record.value.len()
                    ),
                };
                assert_eq!(env.device_id, record.key);
                let framed = frame(body).expect("framed once already");
                assert_eq!(
                    env.body, framed.parsed.object,
                    "the body changed on its way through Kafka"
                );
                assert_eq!(env.idempotency_key, key, "the hops disagree on the key");
            }
            Routed::DeadLetter { record, rejection } => {
                check_rejection(rejection);
                assert!(
                    matches!(rejection.kind(), "unparseable" | "invalid"),
                    "{rejection:?}"
                );
                let reason = record.header(header::DLQ_REASON).expect("dlq-reason");
                assert!(
                    !reason.is_empty() && reason.len() <= MAX_HEADER,
                    "{} bytes",
                    reason.len()
                );
                assert_eq!(record.header(header::DLQ_KIND), Some(rejection.kind()));
                assert_eq!(record.header(header::DLQ_STAGE), Some("sqs-to-kafka"));
                let violations = record
                    .header(header::DLQ_VIOLATIONS)
                    .expect("dlq-violations");
                assert!(
                    violations.len() <= MAX_HEADER,
                    "dlq-violations is {} bytes",
                    violations.len()
                );
                let list: Vec<Value> =
                    serde_json::from_str(violations).expect("dlq-violations is a JSON array");
                assert_eq!(list.len(), rejection.violations().len());
                assert_eq!(
                    record.value,
                    body.as_bytes(),
                    "a dead letter's value is the body as sent"
                );
                assert_eq!(record.key, msg.message_id.clone().unwrap_or_default());
                carried(msg, record);
            }
        }
    }
});
