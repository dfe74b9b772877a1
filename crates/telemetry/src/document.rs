//! Validated telemetry -> MongoDB document. Field names are part of the storage
//! contract (indexes, the writer's device-state updates and dashboards read them).
//!
//! ```text
//! { _id: "<idempotency key>", deviceId, ts: Date, seq?: Int64, readings: {..},
//!   meta?: {..}, topic?: "<mqtt topic>", clientId?, receivedAt?: Date,
//!   ingestedAt: Date, extra?: {unknown top-level fields} }
//! ```
//!
//! In a time-series collection ([`Layout::TimeSeries`]) the three fields that name
//! the source move under the metaField, which MongoDB buckets by:
//! `source: {deviceId, topic?, clientId?}`; the writer adds `kafka: {partition,
//! offset, epoch}`, the provenance its exactly-once check reads (README).
//!
//! Built straight as BSON bytes (`RawDocumentBuf`): no map per document and no
//! second serialization pass on the way to the server (BENCHMARKS.md, bench writer).

use bson::DateTime as BsonDateTime;
use bson::raw::{RawArrayBuf, RawBson, RawBsonRef, RawDocumentBuf};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::{Rule, Violation};
use crate::parse::push_pointer_token;
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
    /// The metaField of a time-series collection.
    pub const SOURCE: &str = "source";
    /// Where a time-series measurement came from (partition, offset, writer epoch).
    pub const KAFKA: &str = "kafka";
}

/// How a collection lays out a message: regular, or time-series (source fields
/// under the metaField `source`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Layout {
    #[default]
    Regular,
    TimeSeries,
}

impl Layout {
    /// The field holding the device id: what readers filter and group by.
    pub fn device_field(self) -> &'static str {
        match self {
            Layout::Regular => field::DEVICE_ID,
            Layout::TimeSeries => "source.deviceId",
        }
    }
}

/// A validated message ready to store: its document, and what the device state
/// needs. The parsed body is not kept (BENCHMARKS.md: memory per message).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub key: String,
    pub device_id: String,
    pub ts: DateTime<Utc>,
    pub seq: Option<u64>,
    pub doc: RawDocumentBuf,
}

impl Prepared {
    pub fn new(key: String, t: &Telemetry, now: DateTime<Utc>) -> Result<Self, Violation> {
        Self::new_in(Layout::Regular, key, t, now)
    }

    pub fn new_in(
        layout: Layout,
        key: String,
        t: &Telemetry,
        now: DateTime<Utc>,
    ) -> Result<Self, Violation> {
        Ok(Self {
            doc: to_document_in(layout, &key, t, now)?,
            key,
            device_id: t.device_id.clone(),
            ts: t.ts,
            seq: t.seq,
        })
    }

    /// Bytes of the stored document (what MongoDB's size limits count).
    pub fn size(&self) -> usize {
        self.doc.as_bytes().len()
    }
}

/// Fails only for a key BSON cannot hold (NUL), which validation already rejects:
/// a `Telemetry` built by hand gets the same violation instead of a panic.
pub fn to_document(
    key: &str,
    t: &Telemetry,
    ingested_at: DateTime<Utc>,
) -> Result<RawDocumentBuf, Violation> {
    to_document_in(Layout::Regular, key, t, ingested_at)
}

pub fn to_document_in(
    layout: Layout,
    key: &str,
    t: &Telemetry,
    ingested_at: DateTime<Utc>,
) -> Result<RawDocumentBuf, Violation> {
    let mut d = RawDocumentBuf::new();
    d.append(field::ID, key);
    match layout {
        Layout::Regular => d.append(field::DEVICE_ID, t.device_id.as_str()),
        Layout::TimeSeries => {
            let mut source = RawDocumentBuf::new();
            source.append(field::DEVICE_ID, t.device_id.as_str());
            if let Some(topic) = &t.mqtt_topic {
                source.append(field::TOPIC, topic.as_str());
            }
            if let Some(client) = &t.client_id {
                source.append(field::CLIENT_ID, client.as_str());
            }
            d.append(field::SOURCE, source);
        }
    }
    d.append(field::TS, BsonDateTime::from_chrono(t.ts));
    if let Some(seq) = t.seq {
        d.append(field::SEQ, seq_to_raw(seq));
    }
    d.append(
        field::READINGS,
        map_to_raw(&t.readings).map_err(|e| e.at(field::READINGS))?,
    );
    if let Some(meta) = &t.meta {
        d.append(
            field::META,
            map_to_raw(meta).map_err(|e| e.at(field::META))?,
        );
    }
    if layout == Layout::Regular {
        if let Some(topic) = &t.mqtt_topic {
            d.append(field::TOPIC, topic.as_str());
        }
        if let Some(client) = &t.client_id {
            d.append(field::CLIENT_ID, client.as_str());
        }
    }
    if let Some(at) = t.received_at {
        d.append(field::RECEIVED_AT, BsonDateTime::from_chrono(at));
    }
    d.append(field::INGESTED_AT, BsonDateTime::from_chrono(ingested_at));
    if !t.extra.is_empty() {
        // Unknown fields sit at the top level of the body, so their paths do too.
        d.append(field::EXTRA, map_to_raw(&t.extra).map_err(|e| e.at(""))?);
    }
    Ok(d)
}

/// A stored regular document in the time-series layout (the migration from one
/// collection type to the other): `deviceId`, `topic` and `clientId` move under
/// `source`, every other field stays, in order. Fails naming the field when
/// `deviceId` is missing or not a string, or `ts` not a date: such a document
/// cannot be a measurement.
pub fn regular_to_timeseries(doc: &bson::RawDocument) -> Result<RawDocumentBuf, String> {
    let mut source = RawDocumentBuf::new();
    let mut rest: Vec<(&str, RawBsonRef<'_>)> = Vec::new();
    let mut device = false;
    for element in doc {
        let (name, value) = element.map_err(|e| format!("unreadable BSON: {e}"))?;
        match name {
            field::DEVICE_ID => {
                let RawBsonRef::String(id) = value else {
                    return Err(format!("{}: must be a string", field::DEVICE_ID));
                };
                source.append(field::DEVICE_ID, id);
                device = true;
            }
            field::TOPIC | field::CLIENT_ID => source.append(name, value.to_raw_bson()),
            field::SOURCE | field::KAFKA => {
                return Err(format!("{name}: reserved in the time-series layout"));
            }
            _ => rest.push((name, value)),
        }
    }
    if !device {
        return Err(format!("{}: missing", field::DEVICE_ID));
    }
    let Some(RawBsonRef::DateTime(_)) = doc.get(field::TS).ok().flatten() else {
        return Err(format!("{}: must be a date", field::TS));
    };
    let mut out = RawDocumentBuf::new();
    let mut fields = rest.into_iter();
    // `_id` first, as everywhere; then the metaField, then the rest.
    if let Some((name, value)) = fields.next() {
        out.append(name, value.to_raw_bson());
    }
    out.append(field::SOURCE, source);
    for (name, value) in fields {
        out.append(name, value.to_raw_bson());
    }
    Ok(out)
}

/// BSON has no unsigned 64-bit integer: a seq above i64::MAX is stored as a Decimal128
/// with the same integer value. MongoDB compares numbers of every type by value, so
/// `$max` on device state keeps the seq order (a decimal string would sort as text:
/// "9223372036854775808" above "10000000000000000000").
pub fn seq_to_raw(seq: u64) -> RawBson {
    i64::try_from(seq).map_or_else(|_| RawBson::Decimal128(decimal128(seq)), RawBson::Int64)
}

/// An integer as IEEE 754-2008 decimal128 (BID): coefficient `n`, exponent 0 (biased
/// 6176), in the little-endian bytes BSON stores. Exact: any u64 fits the coefficient.
fn decimal128(n: u64) -> bson::Decimal128 {
    const EXPONENT_BIAS: u64 = 6176;
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes[8..].copy_from_slice(&(EXPONENT_BIAS << 49).to_le_bytes());
    bson::Decimal128::from_bytes(bytes)
}

/// A key BSON cannot hold; `rev_path` is its pointer's tokens, innermost first
/// (built only on failure, so the common path allocates nothing for it).
struct NulKey {
    rev_path: Vec<String>,
}

impl NulKey {
    fn at(self, base: &str) -> Violation {
        let mut path = String::new();
        for token in std::iter::once(base).chain(self.rev_path.iter().rev().map(String::as_str)) {
            if !token.is_empty() {
                push_pointer_token(&mut path, token);
            }
        }
        Violation::new(path, Rule::ReservedKey)
    }
}

fn map_to_raw(map: &Map<String, Value>) -> Result<RawDocumentBuf, NulKey> {
    let mut d = RawDocumentBuf::new();
    for (k, v) in map {
        let inside = |mut e: NulKey| {
            e.rev_path.push(k.clone());
            e
        };
        if k.contains('\0') {
            return Err(inside(NulKey { rev_path: vec![] }));
        }
        // Scalars are written from borrows: no copy of each string on the way.
        match v {
            Value::Array(_) | Value::Object(_) => d.append(k, json_to_raw(v).map_err(inside)?),
            scalar => d.append_ref(k, scalar_to_raw(scalar)),
        }
    }
    Ok(d)
}

/// A scalar's BSON; containers go through [`json_to_raw`].
fn scalar_to_raw(value: &Value) -> RawBsonRef<'_> {
    match value {
        Value::Bool(b) => RawBsonRef::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RawBsonRef::Int64(i),
            None => RawBsonRef::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => RawBsonRef::String(s),
        Value::Null | Value::Array(_) | Value::Object(_) => RawBsonRef::Null,
    }
}

/// Total, unlike serde's path through bson (which refuses u64 above i64::MAX).
fn json_to_raw(value: &Value) -> Result<RawBson, NulKey> {
    Ok(match value {
        Value::Array(items) => {
            let mut a = RawArrayBuf::new();
            for (i, item) in items.iter().enumerate() {
                a.push(json_to_raw(item).map_err(|mut e| {
                    e.rev_path.push(i.to_string());
                    e
                })?);
            }
            RawBson::Array(a)
        }
        Value::Object(map) => RawBson::Document(map_to_raw(map)?),
        scalar => scalar_to_raw(scalar).to_raw_bson(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telemetry(body: serde_json::Value) -> Telemetry {
        crate::validate(body.as_object().unwrap().clone(), &[], Utc::now()).unwrap()
    }

    #[test]
    fn the_time_series_layout_moves_the_source_under_the_meta_field() {
        let t = telemetry(serde_json::json!({
            "deviceId": "d-1", "ts": 1_767_225_600_000_i64, "seq": 3, "readings": {"t": 1.5},
            "meta": {"fw": "1"}, "mqtt_topic": "dt/d-1", "client_id": "c-1",
        }));
        let now = Utc::now();
        let ts = to_document_in(Layout::TimeSeries, "d-1#seq:3", &t, now).unwrap();
        let ts = bson::Document::try_from(ts.as_ref()).unwrap();
        assert_eq!(
            ts.get_document(field::SOURCE).unwrap(),
            &bson::doc! {"deviceId": "d-1", "topic": "dt/d-1", "clientId": "c-1"}
        );
        for moved in [field::DEVICE_ID, field::TOPIC, field::CLIENT_ID] {
            assert!(!ts.contains_key(moved), "{moved} is only under source");
        }
        assert_eq!(
            ts.get_document(field::META).unwrap(),
            &bson::doc! {"fw": "1"},
            "the device's own meta stays a measurement field"
        );
        let regular = to_document("d-1#seq:3", &t, now).unwrap();
        let migrated = regular_to_timeseries(&regular).unwrap();
        assert_eq!(
            bson::Document::try_from(migrated.as_ref()).unwrap(),
            ts,
            "migrating a stored document gives what the writer stores in time-series mode"
        );
        assert_eq!(Layout::TimeSeries.device_field(), "source.deviceId");
        assert_eq!(Layout::Regular.device_field(), "deviceId");
    }

    #[test]
    fn a_document_that_cannot_be_a_measurement_is_refused_naming_the_field() {
        let cases = [
            (
                bson::rawdoc! {"_id": "k", "ts": bson::DateTime::now()},
                "deviceId: missing",
            ),
            (
                bson::rawdoc! {"_id": "k", "deviceId": 7, "ts": bson::DateTime::now()},
                "deviceId: must be a string",
            ),
            (
                bson::rawdoc! {"_id": "k", "deviceId": "d", "ts": "2026"},
                "ts: must be a date",
            ),
            (
                bson::rawdoc! {"_id": "k", "deviceId": "d", "ts": bson::DateTime::now(), "source": 1},
                "source: reserved in the time-series layout",
            ),
        ];
        for (doc, error) in cases {
            assert_eq!(regular_to_timeseries(&doc).unwrap_err(), error);
        }
    }

    #[test]
    fn a_seq_above_i64_is_an_exact_decimal128() {
        assert_eq!(seq_to_raw(7), RawBson::Int64(7));
        for n in [1u64 << 63, u64::MAX, 10_000_000_000_000_000_000] {
            let RawBson::Decimal128(d) = seq_to_raw(n) else {
                panic!("{n}: not a Decimal128");
            };
            assert_eq!(d.to_string(), n.to_string());
        }
    }
}
