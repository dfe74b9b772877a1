//! SQS record -> Kafka record. The Kafka value is the envelope below (JSON):
//!
//! ```json
//! { "schemaVersion": 1,
//!   "idempotencyKey": "thermo-0001#seq:42",
//!   "deviceId": "thermo-0001",
//!   "sqsMessageId": "059f36b4-...",          // absent when not from SQS
//!   "nonFinitePaths": ["/readings/temp"],    // absent when empty; those values are null in body
//!   "body": { ...the SQS body as the IoT rule wrote it: device payload + mqtt_topic, client_id, received_at } }
//! ```
//!
//! The first hop only *frames* a message (it must find a device for the key); full
//! validation is the writer's, so every producer to the topic is held to the same rules.

use aws_lambda_events::sqs::SqsMessage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Rejection, Unparseable};
use crate::key::idempotency_key;
use crate::parse::{
    MAX_BODY_BYTES, MAX_NON_FINITE_PATHS, MAX_PARSE_DEPTH, ParsedBody, bounded_pointer, parse_body,
    parse_within,
};
use crate::validate::{FIELD_MQTT_TOPIC, FIELD_RECEIVED_AT, check_device_id};

pub const SCHEMA_VERSION: u32 = 1;

/// Largest envelope the writer reads. The first hop checks the body's own 128 KiB; its
/// envelope is larger (re-serialized: `1e15` becomes `1000000000000000.0`, 4.5 times the
/// text; plus at most 64 KiB of non-finite paths and the envelope's fields), so the
/// writer's limit is one no accepted body can reach. A bare body is held to 128 KiB.
pub const MAX_ENVELOPE_BYTES: usize = 5 * MAX_BODY_BYTES + 128 * 1024;
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// Kafka header names written by the bridge.
pub mod header {
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
    pub const SQS_MESSAGE_ID: &str = "sqs-message-id";
    pub const SQS_RECEIVE_COUNT: &str = "sqs-receive-count";
    pub const MQTT_TOPIC: &str = "mqtt-topic";
    pub const RECEIVED_AT: &str = "received-at";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const SCHEMA_VERSION: &str = "schema-version";
    /// The X-Ray trace header, as SQS's `AWSTraceHeader` system attribute carries it.
    pub const TRACE: &str = "x-amzn-trace-id";
    pub const DLQ_REASON: &str = "dlq-reason";
    pub const DLQ_KIND: &str = "dlq-kind";
    pub const DLQ_VIOLATIONS: &str = "dlq-violations";
    pub const DLQ_STAGE: &str = "dlq-stage";
    pub const ORIGINAL_TOPIC: &str = "original-topic";
    pub const ORIGINAL_PARTITION: &str = "original-partition";
    pub const ORIGINAL_OFFSET: &str = "original-offset";
    pub const ORIGINAL_TIMESTAMP: &str = "original-timestamp";
    /// Set by `bridgectl dlq redrive` and copied into any new dead-letter record
    /// ([`crate::redrive::Mark`]); through SQS they are message attributes of the same names.
    pub const REDRIVE_ORIGIN: &str = "redrive-origin";
    pub const REDRIVE_COUNT: &str = "redrive-count";

    /// Headers a dead-letter record keeps from the record it stands for: the trace and
    /// the redrive mark. The rest are derived from the value and written again on redrive.
    pub const CARRIED: [&str; 4] = [TRACE, SQS_MESSAGE_ID, REDRIVE_ORIGIN, REDRIVE_COUNT];
}

/// SQS system attribute names (as the Lambda event carries them).
pub const ATTR_RECEIVE_COUNT: &str = "ApproximateReceiveCount";
pub const ATTR_TRACE_HEADER: &str = "AWSTraceHeader";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub schema_version: u32,
    pub idempotency_key: String,
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqs_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_finite_paths: Vec<String>,
    pub body: Map<String, Value>,
}

/// A record ready for any Kafka client: the mapping stays free of rdkafka.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaRecord {
    pub key: String,
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl KafkaRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A body the first hop accepts: a JSON object with a valid `deviceId`.
#[derive(Debug, Clone, PartialEq)]
pub struct Framed {
    pub device_id: String,
    pub key: String,
    pub parsed: ParsedBody,
}

/// Parses an SQS body far enough to key it. Anything refused here can never succeed.
pub fn frame(body: &str) -> Result<Framed, Rejection> {
    let parsed = parse_body(body)?;
    let device_id = check_device_id(parsed.object.get("deviceId"))
        .map_err(|v| Rejection::Invalid(vec![v]))?
        .to_owned();
    let key = idempotency_key(&device_id, &parsed.object);
    Ok(Framed {
        device_id,
        key,
        parsed,
    })
}

impl Framed {
    /// Builds the telemetry-topic record: key = deviceId, value = [`Envelope`].
    pub fn into_kafka_record(self, msg: &SqsMessage) -> KafkaRecord {
        let mut headers = vec![
            (header::IDEMPOTENCY_KEY, self.key.clone()),
            (header::CONTENT_TYPE, CONTENT_TYPE_JSON.to_owned()),
            (header::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
        ];
        if let Some(topic) = self
            .parsed
            .object
            .get(FIELD_MQTT_TOPIC)
            .and_then(Value::as_str)
        {
            headers.push((header::MQTT_TOPIC, topic.to_owned()));
        }
        if let Some(at) = self
            .parsed
            .object
            .get(FIELD_RECEIVED_AT)
            .and_then(Value::as_i64)
        {
            headers.push((header::RECEIVED_AT, at.to_string()));
        }
        headers.extend(sqs_headers(msg));
        let envelope = Envelope {
            schema_version: SCHEMA_VERSION,
            idempotency_key: self.key,
            device_id: self.device_id.clone(),
            sqs_message_id: msg.message_id.clone(),
            non_finite_paths: self.parsed.non_finite,
            body: self.parsed.object,
        };
        KafkaRecord {
            key: self.device_id,
            value: to_json_bytes(&envelope),
            headers,
        }
    }
}

/// Headers that trace a record back to its SQS message, and its redrive mark if any.
pub(crate) fn sqs_headers(msg: &SqsMessage) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(3);
    let attribute = |name: &str| {
        msg.message_attributes
            .get(name)
            .and_then(|a| a.string_value.as_deref())
    };
    if let Some(mark) = crate::redrive::Mark::read(attribute) {
        headers.extend(mark.headers());
    }
    if let Some(id) = &msg.message_id {
        headers.push((header::SQS_MESSAGE_ID, id.clone()));
    }
    if let Some(count) = msg.attributes.get(ATTR_RECEIVE_COUNT) {
        headers.push((header::SQS_RECEIVE_COUNT, count.clone()));
    }
    if let Some(trace) = msg.attributes.get(ATTR_TRACE_HEADER) {
        headers.push((header::TRACE, trace.clone()));
    }
    headers
}

/// Reads a telemetry-topic value back: an [`Envelope`], or a bare device body
/// written by another producer (it gets the same validation and key).
pub fn decode_value(value: &[u8]) -> Result<Envelope, Rejection> {
    let text = std::str::from_utf8(value).map_err(|e| Unparseable::BadUtf8(e.valid_up_to()))?;
    let parsed = parse_within(text, MAX_ENVELOPE_BYTES, MAX_PARSE_DEPTH + 1)?;
    if parsed.object.contains_key("schemaVersion") && parsed.object.contains_key("body") {
        let mut envelope = envelope_from(parsed.object)?;
        // Recomputed from the body, not trusted: a producer cannot break deduplication with a wrong key.
        let device_id = check_device_id(envelope.body.get("deviceId"))
            .map_err(|v| Rejection::Invalid(vec![v]))?
            .to_owned();
        envelope.idempotency_key = idempotency_key(&device_id, &envelope.body);
        envelope.device_id = device_id;
        let inner = parsed
            .non_finite
            .iter()
            .filter_map(|p| p.strip_prefix("/body").filter(|rest| rest.starts_with('/')))
            .map(str::to_owned);
        envelope.non_finite_paths.extend(inner);
        envelope.non_finite_paths.truncate(MAX_NON_FINITE_PATHS);
        return Ok(envelope);
    }
    // The envelope's extra level is not a bare body's: it gets the first hop's depth limit.
    if depth(&parsed.object) > MAX_PARSE_DEPTH {
        return Err(Unparseable::TooDeep(MAX_PARSE_DEPTH).into());
    }
    if parsed.bytes > MAX_BODY_BYTES {
        return Err(Rejection::invalid(
            "",
            crate::error::Rule::MaxBytes {
                max: MAX_BODY_BYTES,
                actual: parsed.bytes,
            },
        ));
    }
    let device_id = check_device_id(parsed.object.get("deviceId"))
        .map_err(|v| Rejection::Invalid(vec![v]))?
        .to_owned();
    Ok(Envelope {
        schema_version: SCHEMA_VERSION,
        idempotency_key: idempotency_key(&device_id, &parsed.object),
        device_id,
        sqs_message_id: None,
        non_finite_paths: parsed.non_finite,
        body: parsed.object,
    })
}

/// Nesting levels of an object, itself included.
fn depth(object: &Map<String, Value>) -> usize {
    fn of(v: &Value) -> usize {
        match v {
            Value::Object(m) => 1 + m.values().map(of).max().unwrap_or(0),
            Value::Array(a) => 1 + a.iter().map(of).max().unwrap_or(0),
            _ => 0,
        }
    }
    1 + object.values().map(of).max().unwrap_or(0)
}

/// Moves the envelope's fields out of the parsed map. `serde_json::from_value` would
/// rebuild the whole body map, the writer's largest cost per message (BENCHMARKS.md).
fn envelope_from(mut object: Map<String, Value>) -> Result<Envelope, Unparseable> {
    fn wrong(field: &str, expected: &str) -> Unparseable {
        Unparseable::NotJson(format!("envelope: `{field}` must be {expected}"))
    }
    let mut take = |field: &str| object.remove(field).filter(|v| !v.is_null());
    let schema_version = take("schemaVersion")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| wrong("schemaVersion", "an unsigned 32-bit integer"))?;
    let string = |v: Value, field: &str| match v {
        Value::String(s) => Ok(s),
        _ => Err(wrong(field, "a string")),
    };
    let idempotency_key = string(take("idempotencyKey").unwrap_or_default(), "idempotencyKey")?;
    let device_id = string(take("deviceId").unwrap_or_default(), "deviceId")?;
    let sqs_message_id = take("sqsMessageId")
        .map(|v| string(v, "sqsMessageId"))
        .transpose()?;
    let non_finite_paths = match take("nonFinitePaths") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| string(v, "nonFinitePaths[]"))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            // Only JSON Pointers, bounded: a producer's list is not trusted further.
            .filter(|p| p.starts_with('/'))
            .take(MAX_NON_FINITE_PATHS)
            .map(|p| bounded_pointer(&p))
            .collect(),
        Some(_) => return Err(wrong("nonFinitePaths", "an array of strings")),
    };
    let body = match take("body") {
        Some(Value::Object(body)) => body,
        _ => return Err(wrong("body", "an object")),
    };
    Ok(Envelope {
        schema_version,
        idempotency_key,
        device_id,
        sqs_message_id,
        non_finite_paths,
        body,
    })
}

fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing maps of strings and serde_json values cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"deviceId":"d-1","seq":7,"ts":1767225600000,"readings":{"t":NaN}}"#;

    fn record() -> Value {
        let mut msg = SqsMessage::default();
        msg.message_id = Some("m-1".into());
        serde_json::from_slice(&frame(BODY).unwrap().into_kafka_record(&msg).value).unwrap()
    }

    #[test]
    fn an_envelope_decodes_to_what_was_framed() {
        let e = decode_value(record().to_string().as_bytes()).unwrap();
        assert_eq!(e.schema_version, SCHEMA_VERSION);
        assert_eq!(
            (e.idempotency_key.as_str(), e.device_id.as_str()),
            ("d-1#seq:7", "d-1")
        );
        assert_eq!(e.sqs_message_id.as_deref(), Some("m-1"));
        assert_eq!(e.non_finite_paths, vec!["/readings/t"]);
        assert_eq!(e.body["readings"]["t"], Value::Null);
    }

    #[test]
    fn a_wrong_envelope_field_is_named_and_a_null_id_is_absent() {
        for (field, value, expected) in [
            ("schemaVersion", Value::from("1"), "`schemaVersion` must be"),
            (
                "idempotencyKey",
                Value::from(3),
                "`idempotencyKey` must be a string",
            ),
            ("deviceId", Value::Null, "`deviceId` must be a string"),
            (
                "nonFinitePaths",
                Value::from("/x"),
                "`nonFinitePaths` must be an array",
            ),
            ("body", Value::from(1), "`body` must be an object"),
        ] {
            let mut v = record();
            v[field] = value;
            let err = decode_value(v.to_string().as_bytes()).unwrap_err();
            assert!(err.to_string().contains(expected), "{field}: {err}");
        }
        let mut v = record();
        v["sqsMessageId"] = Value::Null;
        assert_eq!(
            decode_value(v.to_string().as_bytes())
                .unwrap()
                .sqs_message_id,
            None
        );
    }

    #[test]
    fn the_key_is_recomputed_not_trusted() {
        let mut v = record();
        v["idempotencyKey"] = Value::from("someone-else#seq:1");
        assert_eq!(
            decode_value(v.to_string().as_bytes())
                .unwrap()
                .idempotency_key,
            "d-1#seq:7"
        );
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// The envelope of any body the first hop accepts fits the writer's limit, even one
    /// built to grow the most when re-serialized (short exponents become long decimals).
    #[test]
    fn a_body_at_the_size_limit_fits_the_writers_envelope_limit() {
        let mut msg = SqsMessage::default();
        msg.message_id = Some("0f9e0b8c-5a43-4c55-9b69-1d9c8e1f6a77".into());
        for number in ["1e15", "1E15", "-1e15", "1e-5", "9e15", "NaN"] {
            let head = r#"{"deviceId":"d","seq":1,"ts":1767225600000,"readings":{},"x":["#;
            let mut body = head.to_owned();
            while body.len() + 2 * number.len() + 3 <= MAX_BODY_BYTES {
                body.push_str(number);
                body.push(',');
            }
            body.push_str(number);
            body.push_str("]}");
            assert!(body.len() <= MAX_BODY_BYTES);
            let record = frame(&body).unwrap().into_kafka_record(&msg);
            assert!(
                record.value.len() <= MAX_ENVELOPE_BYTES,
                "{number}: {} > {MAX_ENVELOPE_BYTES}",
                record.value.len()
            );
            let decoded = decode_value(&record.value).unwrap();
            assert_eq!(decoded.idempotency_key, "d#seq:1");
        }
    }

    #[test]
    fn a_bare_body_is_held_to_the_body_limit() {
        let mut body =
            r#"{"deviceId":"d","seq":1,"ts":1767225600000,"readings":{},"pad":""#.to_owned();
        body.push_str(&"x".repeat(MAX_BODY_BYTES));
        body.push_str("\"}");
        let err = decode_value(body.as_bytes()).unwrap_err();
        assert_eq!(err.violations()[0].rule.code(), "max_bytes", "{err}");
    }
}
