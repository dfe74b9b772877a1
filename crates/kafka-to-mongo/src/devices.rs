//! Per-device state in the `devices` collection, kept right under duplicates,
//! redelivery and out-of-order arrival:
//! - `count` grows only by documents this batch really inserted (same transaction);
//! - `last` (ts, seq, key, readings) moves only to a newer (ts, seq), by `$max`;
//! - `firstSeen` is the oldest ts ever stored (`$min`).

use std::collections::HashMap;

use bson::raw::{RawArrayBuf, RawBson, RawDocumentBuf};
use bson::rawdoc;
use chrono::{DateTime, Utc};
use telemetry::document::{field, seq_to_raw};

use telemetry::document::Prepared;

/// What one batch's new documents change for one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceDelta {
    pub device_id: String,
    pub inserted: i64,
    pub oldest_ts: DateTime<Utc>,
    pub newest_ts: DateTime<Utc>,
    pub newest_seq: Option<u64>,
    pub newest_key: String,
    /// The newest document's `readings` (null only if a document lacked them).
    pub newest_readings: RawBson,
}

fn order(ts: DateTime<Utc>, seq: Option<u64>) -> (DateTime<Utc>, i128) {
    (ts, seq.map_or(-1, i128::from))
}

fn readings(p: &Prepared) -> RawBson {
    p.doc
        .get_document(field::READINGS)
        .map_or(RawBson::Null, |r| RawBson::Document(r.to_owned()))
}

/// Folds the batch's inserted messages into one delta per device.
pub fn deltas<'a>(inserted: impl IntoIterator<Item = &'a Prepared>) -> Vec<DeviceDelta> {
    let mut by_device: HashMap<&str, DeviceDelta> = HashMap::new();
    for p in inserted {
        let d = by_device
            .entry(&p.device_id)
            .or_insert_with(|| DeviceDelta {
                device_id: p.device_id.clone(),
                inserted: 0,
                oldest_ts: p.ts,
                newest_ts: p.ts,
                newest_seq: p.seq,
                newest_key: p.key.clone(),
                newest_readings: readings(p),
            });
        d.inserted += 1;
        d.oldest_ts = d.oldest_ts.min(p.ts);
        if order(p.ts, p.seq) > order(d.newest_ts, d.newest_seq) {
            d.newest_ts = p.ts;
            d.newest_seq = p.seq;
            d.newest_key.clone_from(&p.key);
            d.newest_readings = readings(p);
        }
    }
    let mut out: Vec<_> = by_device.into_values().collect();
    out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    out
}

impl DeviceDelta {
    /// The newest message as the `last` subdocument. Its fields are always present
    /// and in this order, so that BSON's comparison of two of them is the (ts, seq)
    /// order: dates compare by time, and a missing seq (null) sorts below any number.
    fn last(&self) -> RawDocumentBuf {
        rawdoc! {
            "ts": bson::DateTime::from_chrono(self.newest_ts),
            "seq": self.newest_seq.map_or(RawBson::Null, seq_to_raw),
            "key": self.newest_key.as_str(),
            "readings": self.newest_readings.clone(),
        }
    }

    /// One upsert per device with plain update operators: `$inc` the count, `$min`
    /// the first seen, and `$max` the `last` subdocument, which therefore moves only
    /// to a newer (ts, seq), whatever order batches commit in. On SecantusDB this
    /// costs about a third less than the update pipeline of `$cond`s it replaced
    /// (BENCHMARKS.md). Operator values are never evaluated, so a reading such as
    /// "$count" is stored as text.
    pub fn update(&self, now: DateTime<Utc>) -> RawDocumentBuf {
        rawdoc! {
            "q": {"_id": self.device_id.as_str()},
            "u": {
                "$inc": {"count": self.inserted},
                "$min": {"firstSeen": bson::DateTime::from_chrono(self.oldest_ts)},
                "$max": {"last": self.last()},
                "$set": {"updatedAt": bson::DateTime::from_chrono(now)},
            },
            "upsert": true,
        }
    }
}

/// The `updates` array of one `update` command: one statement per device.
pub fn update_statements(deltas: &[DeviceDelta], now: DateTime<Utc>) -> RawArrayBuf {
    let mut out = RawArrayBuf::new();
    for d in deltas {
        out.push(d.update(now));
    }
    out
}

/// The statements of one `update` command, and the index of its first delta.
#[derive(Debug)]
pub struct UpdateChunk {
    pub first: usize,
    pub statements: RawArrayBuf,
}

/// The device statements, split into `update` commands of at most `max_bytes` of
/// statements each (one statement alone may exceed it: a single device's update is
/// bounded by the 128 KiB body limit).
pub fn chunks(deltas: &[DeviceDelta], now: DateTime<Utc>, max_bytes: usize) -> Vec<UpdateChunk> {
    let mut out = Vec::new();
    let mut current = UpdateChunk {
        first: 0,
        statements: RawArrayBuf::new(),
    };
    let mut bytes = 0;
    for (i, d) in deltas.iter().enumerate() {
        let statement = d.update(now);
        let size = statement.as_bytes().len();
        if bytes > 0 && bytes + size > max_bytes {
            let next = UpdateChunk {
                first: i,
                statements: RawArrayBuf::new(),
            };
            out.push(std::mem::replace(&mut current, next));
            bytes = 0;
        }
        bytes += size;
        current.statements.push(statement);
    }
    if bytes > 0 {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use bson::{Document, doc};
    use serde_json::json;

    use super::*;

    fn t(key: &str, device: &str, seq: Option<u64>, ts_ms: i64, temp: f64) -> Prepared {
        let mut body = json!({"deviceId": device, "ts": ts_ms, "readings": {"t": temp}});
        if let Some(s) = seq {
            body["seq"] = json!(s);
        }
        let t = telemetry::validate(body.as_object().unwrap().clone(), &[], Utc::now()).unwrap();
        Prepared::new(key.to_owned(), &t, Utc::now()).unwrap()
    }

    fn plain(raw: &RawDocumentBuf) -> Document {
        Document::try_from(raw.as_ref()).unwrap()
    }

    #[test]
    fn a_batch_folds_into_one_delta_per_device_with_the_newest_state() {
        let ms = 1_767_225_600_000;
        let items = [
            t("a#seq:2", "a", Some(2), ms + 2_000, 2.0),
            t("a#seq:3", "a", Some(3), ms + 1_000, 3.0),
            t("a#seq:1", "a", Some(1), ms, 1.0),
            t("b#ts", "b", None, ms, 9.0),
        ];
        let d = deltas(&items);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].inserted, 3);
        assert_eq!(
            d[0].newest_key, "a#seq:2",
            "newest by ts, seq only breaks ties"
        );
        assert_eq!(d[0].oldest_ts.timestamp_millis(), ms);
        assert_eq!(d[1].newest_seq, None);
        let readings = match &d[0].newest_readings {
            RawBson::Document(r) => plain(r),
            other => panic!("readings: {other:?}"),
        };
        assert_eq!(
            readings.get_f64("t").unwrap(),
            2.0,
            "the newest message's readings"
        );
    }

    #[test]
    fn one_upsert_per_device_of_plain_operators() {
        let ms = 1_767_225_600_000;
        let items = [
            t("a#seq:1", "a", Some(1), ms, 1.0),
            t("a#seq:2", "a", Some(2), ms + 1_000, 2.0),
            t("b#seq:1", "b", Some(1), ms, 3.0),
        ];
        let s: Vec<Document> = update_statements(&deltas(&items), Utc::now())
            .into_iter()
            .map(|v| plain(&v.unwrap().as_document().unwrap().to_owned()))
            .collect();
        assert_eq!(s.len(), 2, "one statement per device");
        assert_eq!(s[0].get_document("q").unwrap(), &doc! {"_id": "a"});
        assert!(s[0].get_bool("upsert").unwrap());
        let u = s[0].get_document("u").unwrap();
        assert_eq!(u.get_document("$inc").unwrap(), &doc! {"count": 2_i64});
        assert_eq!(
            u.get_document("$min")
                .unwrap()
                .get_datetime("firstSeen")
                .unwrap()
                .timestamp_millis(),
            ms
        );
        let last = u
            .get_document("$max")
            .unwrap()
            .get_document("last")
            .unwrap();
        assert_eq!(last.get_str("key").unwrap(), "a#seq:2");
        assert_eq!(last.get_i64("seq").unwrap(), 2);
        assert_eq!(
            last.get_document("readings").unwrap().get_f64("t").unwrap(),
            2.0
        );
    }

    #[test]
    fn device_updates_split_into_commands_under_the_size_limit() {
        let ms = 1_767_225_600_000;
        let items: Vec<Prepared> = (0..50)
            .map(|i| {
                t(
                    &format!("d{i:02}#seq:1"),
                    &format!("d{i:02}"),
                    Some(1),
                    ms,
                    1.0,
                )
            })
            .collect();
        let d = deltas(&items);
        let one = d[0].update(Utc::now()).as_bytes().len();
        let chunks = chunks(&d, Utc::now(), one * 10);
        assert_eq!(chunks.len(), 5, "ten statements a command");
        assert_eq!(
            chunks.iter().map(|c| c.first).collect::<Vec<_>>(),
            [0, 10, 20, 30, 40]
        );
        let total: usize = chunks
            .iter()
            .map(|c| c.statements.into_iter().count())
            .sum();
        assert_eq!(total, 50, "every device once");
        assert!(super::chunks(&[], Utc::now(), 100).is_empty());
    }

    #[test]
    fn last_compares_as_ts_then_seq_with_a_missing_seq_lowest() {
        let ms = 1_767_225_600_000;
        let with_seq = &deltas(&[t("a#seq:5", "a", Some(5), ms, 1.0)])[0];
        let without_seq = &deltas(&[t("b#ts", "b", None, ms, 1.0)])[0];
        for delta in [with_seq, without_seq] {
            let last = plain(&delta.last());
            let order: Vec<&str> = last.keys().map(String::as_str).collect();
            assert_eq!(
                order,
                ["ts", "seq", "key", "readings"],
                "BSON compares documents field by field, in order"
            );
        }
        assert_eq!(
            plain(&without_seq.last()).get("seq"),
            Some(&bson::Bson::Null),
            "present as null, which sorts below every number"
        );
    }
}
