//! Pure logic of one batch: converting the source documents (and the rules that make
//! one invalid), the lookup of what the target holds already, what is left to insert,
//! and how many documents the next read asks for. No I/O, so every rule is
//! unit-tested here; `target.rs` and `copy.rs` do the calls.

use std::collections::HashSet;

use bson::raw::{RawBsonRef, RawDocumentBuf};
use bson::{Bson, Document, doc};
use serde::Serialize;
use telemetry::document::{Layout, field, regular_to_timeseries};

/// A source document in the time-series layout, with what the lookup needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    id: Bson,
    device: String,
    ts: bson::DateTime,
    doc: RawDocumentBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

/// One batch of source documents, converted.
#[derive(Debug, Default)]
pub struct Planned {
    pub measurements: Vec<Measurement>,
    pub invalid: Vec<Skipped>,
    /// Where the next batch starts (the last document's `_id`, valid or not).
    pub last_id: Option<Bson>,
}

pub fn render_id(id: &Bson) -> String {
    id.to_string()
}

/// A set key for an `_id`: equal for equal BSON values of the same type.
fn id_key(id: &Bson) -> String {
    id.clone().into_canonical_extjson().to_string()
}

pub fn plan_batch(docs: &[RawDocumentBuf]) -> anyhow::Result<Planned> {
    let mut planned = Planned::default();
    for doc in docs {
        let id = doc
            .get(field::ID)
            .ok()
            .flatten()
            .and_then(|v| Bson::try_from(v.to_raw_bson()).ok())
            .ok_or_else(|| anyhow::anyhow!("a source document has no readable _id"))?;
        let converted = regular_to_timeseries(doc).and_then(|doc| {
            let device = match doc
                .get_document(field::SOURCE)
                .ok()
                .and_then(|s| s.get(field::DEVICE_ID).ok().flatten())
            {
                Some(RawBsonRef::String(d)) => d.to_owned(),
                _ => return Err(format!("{}: missing", field::DEVICE_ID)),
            };
            let ts = doc
                .get_datetime(field::TS)
                .map_err(|_| format!("{}: must be a date", field::TS))?;
            Ok((device, ts, doc))
        });
        match converted {
            Ok((device, ts, doc)) => planned.measurements.push(Measurement {
                id: id.clone(),
                device,
                ts,
                doc,
            }),
            Err(reason) => planned.invalid.push(Skipped {
                id: render_id(&id),
                reason,
            }),
        }
        planned.last_id = Some(id);
    }
    Ok(planned)
}

/// The indexed query for copies of `batch` already in the target: its devices, its
/// time range (the `{source.deviceId, ts}` index) and its `_id`s.
pub fn lookup_filter(batch: &[Measurement]) -> Document {
    let mut devices: Vec<&str> = batch.iter().map(|m| m.device.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    let ids: Vec<Bson> = batch.iter().map(|m| m.id.clone()).collect();
    let from = batch
        .iter()
        .map(|m| m.ts)
        .min()
        .unwrap_or(bson::DateTime::MIN);
    let to = batch
        .iter()
        .map(|m| m.ts)
        .max()
        .unwrap_or(bson::DateTime::MAX);
    doc! {
        Layout::TimeSeries.device_field(): {"$in": devices},
        field::TS: {"$gte": from, "$lte": to},
        field::ID: {"$in": ids},
    }
}

/// What the lookup found: the `_id`s present, and how many extra copies of them.
#[derive(Debug, Default, PartialEq)]
pub struct Found {
    present: HashSet<String>,
    pub duplicates: u64,
}

pub fn tally<'a>(ids: impl IntoIterator<Item = &'a Bson>) -> Found {
    let mut f = Found::default();
    for id in ids {
        if !f.present.insert(id_key(id)) {
            f.duplicates += 1;
        }
    }
    f
}

/// The measurements of `batch` the target does not hold.
pub fn missing<'a>(batch: &'a [Measurement], found: &Found) -> Vec<&'a RawDocumentBuf> {
    batch
        .iter()
        .filter(|m| !found.present.contains(&id_key(&m.id)))
        .map(|m| &m.doc)
        .collect()
}

/// How many documents the next read asks for; 0 when this run's limit is reached.
pub fn next_batch_len(batch_size: u32, limit: Option<u64>, read: u64) -> u64 {
    let left = limit.map_or(u64::MAX, |l| l.saturating_sub(read));
    u64::from(batch_size).min(left)
}

#[cfg(test)]
mod tests {
    use bson::rawdoc;

    use super::*;

    fn at(ms: i64) -> bson::DateTime {
        bson::DateTime::from_millis(ms)
    }

    fn regular(id: &str, device: &str, ms: i64) -> RawDocumentBuf {
        rawdoc! {"_id": id, "deviceId": device, "ts": at(ms), "readings": {"t": 1.5}, "topic": "dt/x"}
    }

    #[test]
    fn a_batch_is_converted_and_its_invalid_documents_named_with_the_rule() {
        let docs = vec![
            regular("a#seq:1", "a", 2_000),
            rawdoc! {"_id": "b#seq:1", "ts": at(1_000)},
            regular("c#seq:1", "c", 1_000),
            rawdoc! {"_id": "d#seq:1", "deviceId": "d", "ts": "yesterday"},
        ];
        let p = plan_batch(&docs).unwrap();
        assert_eq!(p.last_id, Some(Bson::String("d#seq:1".into())));
        assert_eq!(
            p.invalid,
            vec![
                Skipped {
                    id: "\"b#seq:1\"".into(),
                    reason: "deviceId: missing".into()
                },
                Skipped {
                    id: "\"d#seq:1\"".into(),
                    reason: "ts: must be a date".into()
                },
            ]
        );
        let ms = &p.measurements;
        assert_eq!(ms.len(), 2);
        assert_eq!((ms[0].device.as_str(), ms[0].ts), ("a", at(2_000)));
        assert_eq!(ms[0].doc, regular_to_timeseries(&docs[0]).unwrap());
        let f = lookup_filter(ms);
        assert_eq!(
            f,
            doc! {
                "source.deviceId": {"$in": ["a", "c"]},
                "ts": {"$gte": at(1_000), "$lte": at(2_000)},
                "_id": {"$in": ["a#seq:1", "c#seq:1"]},
            }
        );
        assert!(plan_batch(&[rawdoc! {"deviceId": "x"}]).is_err());
        assert!(plan_batch(&[]).unwrap().last_id.is_none());
    }

    #[test]
    fn only_what_the_target_lacks_is_inserted_and_extra_copies_are_counted() {
        let docs: Vec<_> = (1..=4)
            .map(|i| regular(&format!("d#seq:{i}"), "d", i))
            .collect();
        let p = plan_batch(&docs).unwrap();
        let present = [
            Bson::String("d#seq:2".into()),
            Bson::String("d#seq:4".into()),
            Bson::String("d#seq:4".into()),
            // Another type, same text: not the same _id.
            Bson::Int64(1),
        ];
        let f = tally(present.iter());
        assert_eq!(f.duplicates, 1);
        let fresh = missing(&p.measurements, &f);
        assert_eq!(fresh, vec![&p.measurements[0].doc, &p.measurements[2].doc]);
        assert_eq!(missing(&p.measurements, &Found::default()).len(), 4);
    }

    #[test]
    fn batches_stop_at_the_limit() {
        assert_eq!(next_batch_len(1_000, None, 5_000), 1_000);
        assert_eq!(next_batch_len(1_000, Some(2_500), 0), 1_000);
        assert_eq!(next_batch_len(1_000, Some(2_500), 2_000), 500);
        assert_eq!(next_batch_len(1_000, Some(2_500), 2_500), 0);
        assert_eq!(next_batch_len(1_000, Some(10), 20), 0);
    }
}
