//! The idempotency key: the same device message gets the same key on every path
//! (raw or base64 body, any SQS message id, any redelivery), so MongoDB's unique
//! `_id` turns at-least-once delivery into exactly-once storage.
//!
//! Forms (`#` cannot occur in a valid deviceId, so keys never collide across forms):
//! - `{deviceId}#seq:{seq}` when `seq` is present. A device must not reuse a seq
//!   (for example after a reset); one that may should omit `seq`.
//! - `{deviceId}#ts:{epoch_ms}:{hash}` otherwise: `hash` is 16 hex digits of
//!   SHA-256 over the canonical JSON of `readings`.
//! - `{deviceId}#body:{hash}` when neither `seq` nor a readable `ts` is there: such a
//!   message is invalid and will be dead-lettered, but its key is still stable.
//!
//! The fields the IoT rule adds (`mqtt_topic`, `client_id`, `received_at`) never
//! enter the key: `received_at` changes when IoT redelivers.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::validate::{FIELD_CLIENT_ID, FIELD_MQTT_TOPIC, FIELD_RECEIVED_AT, parse_ts};

/// Computes the key from a body whose `deviceId` is already checked.
pub fn idempotency_key(device_id: &str, body: &Map<String, Value>) -> String {
    if let Some(seq) = body.get("seq").and_then(Value::as_u64) {
        return format!("{device_id}#seq:{seq}");
    }
    if let Some(Ok(ts)) = body.get("ts").and_then(parse_ts) {
        let readings = body.get("readings").unwrap_or(&Value::Null);
        return format!(
            "{device_id}#ts:{}:{}",
            ts.timestamp_millis(),
            short_hash(readings)
        );
    }
    let mut device_part = body.clone();
    for field in [FIELD_MQTT_TOPIC, FIELD_CLIENT_ID, FIELD_RECEIVED_AT] {
        device_part.remove(field);
    }
    format!(
        "{device_id}#body:{}",
        short_hash(&Value::Object(device_part))
    )
}

/// The first 8 bytes of SHA-256 over the canonical form, as hex.
fn short_hash(value: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(value, &mut canonical);
    hex::encode(&Sha256::digest(canonical.as_bytes())[..8])
}

/// JSON with object keys sorted at every depth and no insignificant white space.
/// Sorting is explicit so the key does not depend on serde_json's map feature flags.
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}
