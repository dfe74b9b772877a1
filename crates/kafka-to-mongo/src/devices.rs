//! Per-device state in the `devices` collection, kept right under duplicates,
//! redelivery and out-of-order arrival:
//! - `count` grows only by documents this batch really inserted (same transaction);
//! - `last*` fields move only to a newer (ts, seq), by a conditional filter;
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
    /// Upsert: count and first-seen, which commute and so cannot go wrong out of order.
    pub fn count_update(&self, now: DateTime<Utc>) -> (RawDocumentBuf, RawDocumentBuf) {
        (
            rawdoc! {"_id": self.device_id.as_str()},
            rawdoc! {
                "$inc": {"count": self.inserted},
                "$min": {"firstSeen": bson::DateTime::from_chrono(self.oldest_ts)},
                "$set": {"updatedAt": bson::DateTime::from_chrono(now)},
            },
        )
    }

    /// Conditional: matches only while the stored state is older than this batch's newest.
    pub fn state_update(&self) -> (RawDocumentBuf, RawDocumentBuf) {
        let ts = bson::DateTime::from_chrono(self.newest_ts);
        let mut older = RawArrayBuf::new();
        older.push(rawdoc! {"lastTs": {"$exists": false}});
        older.push(rawdoc! {"lastTs": {"$lt": ts}});
        if let Some(seq) = self.newest_seq {
            older.push(rawdoc! {"lastTs": ts, "lastSeq": {"$lt": seq_to_raw(seq)}});
        }
        let seq = self.newest_seq.map_or(RawBson::Null, seq_to_raw);
        (
            rawdoc! {"_id": self.device_id.as_str(), "$or": older},
            rawdoc! {"$set": {
                "lastTs": ts,
                "lastKey": self.newest_key.as_str(),
                "lastReadings": self.newest_readings.clone(),
                "lastSeq": seq,
            }},
        )
    }
}

/// The `updates` array of one ordered `update` command: per device, the counting
/// upsert first, then the conditional state update (which needs the document).
pub fn update_statements(deltas: &[DeviceDelta], now: DateTime<Utc>) -> RawArrayBuf {
    let mut out = RawArrayBuf::new();
    for d in deltas {
        let (q, u) = d.count_update(now);
        let (sq, su) = d.state_update();
        out.push(rawdoc! {"q": q, "u": u, "upsert": true});
        out.push(rawdoc! {"q": sq, "u": su});
    }
    out
}

#[cfg(test)]
mod tests {
    use bson::Document;
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
    fn the_state_update_only_matches_older_state() {
        let d = &deltas(&[t("a#seq:5", "a", Some(5), 1_767_225_600_000, 1.0)])[0];
        let (filter, update) = d.state_update();
        let (filter, update) = (plain(&filter), plain(&update));
        let or = filter.get_array("$or").unwrap();
        assert_eq!(or.len(), 3, "{filter}");
        let set = update.get_document("$set").unwrap();
        assert_eq!(set.get_i64("lastSeq").unwrap(), 5);
        assert_eq!(set.get_str("lastKey").unwrap(), "a#seq:5");
        assert_eq!(
            set.get_document("lastReadings")
                .unwrap()
                .get_f64("t")
                .unwrap(),
            1.0
        );
    }

    #[test]
    fn each_device_counts_first_then_conditionally_sets_state() {
        let ms = 1_767_225_600_000;
        let items = [
            t("a#seq:1", "a", Some(1), ms, 1.0),
            t("b#seq:1", "b", Some(1), ms, 2.0),
        ];
        let s: Vec<Document> = update_statements(&deltas(&items), Utc::now())
            .into_iter()
            .map(|v| plain(&v.unwrap().as_document().unwrap().to_owned()))
            .collect();
        assert_eq!(s.len(), 4);
        for (i, device) in [(0, "a"), (2, "b")] {
            assert!(s[i].get_bool("upsert").unwrap(), "{}", s[i]);
            assert_eq!(
                s[i].get_document("q").unwrap().get_str("_id").unwrap(),
                device
            );
            assert!(
                s[i + 1].get("upsert").is_none(),
                "state never creates: {}",
                s[i + 1]
            );
            assert!(s[i + 1].get_document("q").unwrap().contains_key("$or"));
        }
    }
}
