//! Per-device state in the `devices` collection, kept right under duplicates,
//! redelivery and out-of-order arrival:
//! - `count` grows only by documents this batch really inserted (same transaction);
//! - `last*` fields move only to a newer (ts, seq), by a condition in the update pipeline;
//! - `firstSeen` is the oldest ts ever stored (`$min`).

use std::collections::HashMap;

use bson::raw::{RawArrayBuf, RawBson, RawDocumentBuf};
use bson::rawdoc;
use chrono::{DateTime, Utc};
use telemetry::document::{field, seq_to_raw};

use crate::store::Prepared;

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
    /// Whether this delta's newest message is newer than the stored state, as an
    /// aggregation expression over the stored document: (ts, seq) order, a missing
    /// seq below any seq, no stored state older than anything.
    fn is_newer(&self) -> RawDocumentBuf {
        let ts = bson::DateTime::from_chrono(self.newest_ts);
        let stored_ts = rawdoc! {"$ifNull": ["$lastTs", RawBson::Null]};
        let older_ts = rawdoc! {"$lt": [stored_ts, ts]};
        match self.newest_seq {
            None => older_ts,
            Some(seq) => rawdoc! {"$or": [
                older_ts,
                {"$and": [
                    {"$eq": ["$lastTs", ts]},
                    {"$lt": [{"$ifNull": ["$lastSeq", RawBson::Null]}, seq_to_raw(seq)]},
                ]},
            ]},
        }
    }

    /// One upsert per device, as an update pipeline: the count and first-seen
    /// (which commute, so order cannot matter) and the `last*` fields, which move
    /// only when this batch's newest message is newer than what is stored. One
    /// statement, not an upsert plus a conditional update: on SecantusDB the pair
    /// cost 2.3 times as much (BENCHMARKS.md). Values from the message go in
    /// `$literal`, so a reading such as "$count" is stored as text, never read as a path.
    pub fn update(&self, now: DateTime<Utc>) -> RawDocumentBuf {
        let newer = self.is_newer();
        let pick = |new: RawBson, field: &str| -> RawBson {
            rawdoc! {"$cond": [newer.clone(), {"$literal": new}, format!("${field}")]}.into()
        };
        let seq = self.newest_seq.map_or(RawBson::Null, seq_to_raw);
        let ts = bson::DateTime::from_chrono(self.newest_ts);
        let mut set = rawdoc! {
            "count": {"$add": [{"$ifNull": ["$count", 0_i64]}, self.inserted]},
            "firstSeen": {"$min": ["$firstSeen", bson::DateTime::from_chrono(self.oldest_ts)]},
            "updatedAt": bson::DateTime::from_chrono(now),
        };
        set.append("lastTs", pick(ts.into(), "lastTs"));
        set.append("lastSeq", pick(seq, "lastSeq"));
        set.append("lastKey", pick(self.newest_key.as_str().into(), "lastKey"));
        set.append(
            "lastReadings",
            pick(self.newest_readings.clone(), "lastReadings"),
        );
        let mut pipeline = RawArrayBuf::new();
        pipeline.push(rawdoc! {"$set": set});
        rawdoc! {"q": {"_id": self.device_id.as_str()}, "u": pipeline, "upsert": true}
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

    fn set_stage(statement: &Document) -> Document {
        let u = statement.get_array("u").unwrap();
        assert_eq!(u.len(), 1, "{statement}");
        u[0].as_document()
            .unwrap()
            .get_document("$set")
            .unwrap()
            .clone()
    }

    #[test]
    fn one_upsert_per_device_with_message_values_as_literals() {
        let ms = 1_767_225_600_000;
        let items = [
            t("a#seq:1", "a", Some(1), ms, 1.0),
            t("b#seq:1", "b", Some(1), ms, 2.0),
        ];
        let s: Vec<Document> = update_statements(&deltas(&items), Utc::now())
            .into_iter()
            .map(|v| plain(&v.unwrap().as_document().unwrap().to_owned()))
            .collect();
        assert_eq!(s.len(), 2, "one statement per device");
        for (statement, device) in s.iter().zip(["a", "b"]) {
            assert!(statement.get_bool("upsert").unwrap(), "{statement}");
            assert_eq!(statement.get_document("q").unwrap(), &doc! {"_id": device});
            let set = set_stage(statement);
            for field in ["lastKey", "lastReadings", "lastSeq", "lastTs"] {
                let cond = set.get_document(field).unwrap().get_array("$cond").unwrap();
                assert!(
                    cond[1].as_document().unwrap().contains_key("$literal"),
                    "{field}: {cond:?}"
                );
                assert_eq!(cond[2].as_str(), Some(format!("${field}").as_str()));
            }
        }
    }

    #[test]
    fn newer_means_a_later_ts_or_the_same_ts_and_a_higher_seq() {
        let ms = 1_767_225_600_000;
        let with_seq = &deltas(&[t("a#seq:5", "a", Some(5), ms, 1.0)])[0];
        let newer = plain(&with_seq.is_newer());
        let or = newer.get_array("$or").unwrap();
        assert_eq!(or.len(), 2, "{newer}");
        assert!(or[0].as_document().unwrap().contains_key("$lt"));
        assert!(or[1].as_document().unwrap().contains_key("$and"));

        let without_seq = &deltas(&[t("b#ts", "b", None, ms, 1.0)])[0];
        let newer = plain(&without_seq.is_newer());
        assert!(
            newer.contains_key("$lt") && !newer.contains_key("$or"),
            "without a seq only a later ts is newer: {newer}"
        );
        let set = set_stage(&plain(&without_seq.update(Utc::now())));
        assert_eq!(
            set.get_document("count").unwrap(),
            &doc! {"$add": [{"$ifNull": ["$count", 0_i64]}, 1_i64]}
        );
    }
}
