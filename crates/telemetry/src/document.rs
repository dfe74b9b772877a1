//! Validated telemetry -> MongoDB document. Field names are part of the storage
//! contract (indexes, the writer's device-state updates and dashboards read them).
//!
//! ```text
//! { _id: "<idempotency key>", deviceId, ts: Date, seq?: Int64, readings: {..},
//!   meta?: {..}, topic?: "<mqtt topic>", clientId?, receivedAt?: Date,
//!   ingestedAt: Date, extra?: {unknown top-level fields} }
//! ```

use bson::{Bson, Document, doc};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::validate::Telemetry;

pub mod field {
    pub const ID: &str = "_id";
    pub const DEVICE_ID: &str = "deviceId";
    pub const TS: &str = "ts";
    pub const SEQ: &str = "seq";
    pub const READINGS: &str = "readings";
    pub const META: &str = "meta";
    pub const TOPIC: &str = "topic";
    pub const CLIENT_ID: &str = "clientId";
    pub const RECEIVED_AT: &str = "receivedAt";
    pub const INGESTED_AT: &str = "ingestedAt";
    pub const EXTRA: &str = "extra";
}

pub fn to_document(key: &str, t: &Telemetry, ingested_at: DateTime<Utc>) -> Document {
    let mut d = doc! {
        field::ID: key,
        field::DEVICE_ID: &t.device_id,
        field::TS: bson::DateTime::from_chrono(t.ts),
        field::READINGS: map_to_document(&t.readings),
    };
    if let Some(seq) = t.seq {
        d.insert(field::SEQ, seq_to_bson(seq));
    }
    if let Some(meta) = &t.meta {
        d.insert(field::META, map_to_document(meta));
    }
    if let Some(topic) = &t.mqtt_topic {
        d.insert(field::TOPIC, topic);
    }
    if let Some(client) = &t.client_id {
        d.insert(field::CLIENT_ID, client);
    }
    if let Some(at) = t.received_at {
        d.insert(field::RECEIVED_AT, bson::DateTime::from_chrono(at));
    }
    d.insert(field::INGESTED_AT, bson::DateTime::from_chrono(ingested_at));
    if !t.extra.is_empty() {
        d.insert(field::EXTRA, map_to_document(&t.extra));
    }
    d
}

/// BSON has no unsigned 64-bit integer: a seq above i64::MAX is stored as its decimal string.
pub fn seq_to_bson(seq: u64) -> Bson {
    i64::try_from(seq).map_or_else(|_| Bson::String(seq.to_string()), Bson::Int64)
}

pub fn map_to_document(map: &Map<String, Value>) -> Document {
    map.iter()
        .map(|(k, v)| (k.clone(), json_to_bson(v)))
        .collect()
}

/// Total, unlike serde's path through bson (which refuses u64 above i64::MAX).
pub fn json_to_bson(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(json_to_bson).collect()),
        Value::Object(map) => Bson::Document(map_to_document(map)),
    }
}
