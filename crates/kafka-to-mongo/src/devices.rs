//! Per-device state in the `devices` collection, kept right under duplicates,
//! redelivery and out-of-order arrival:
//! - `count` grows only by documents this batch really inserted (same transaction);
//! - `last*` fields move only to a newer (ts, seq), by a conditional filter;
//! - `firstSeen` is the oldest ts ever stored (`$min`).

use std::collections::HashMap;

use bson::{Bson, Document, doc};
use chrono::{DateTime, Utc};
use telemetry::Telemetry;
use telemetry::document::{map_to_document, seq_to_bson};

/// What one batch's new documents change for one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceDelta {
    pub device_id: String,
    pub inserted: i64,
    pub oldest_ts: DateTime<Utc>,
    pub newest_ts: DateTime<Utc>,
    pub newest_seq: Option<u64>,
    pub newest_key: String,
    pub newest_readings: Document,
}

fn order(ts: DateTime<Utc>, seq: Option<u64>) -> (DateTime<Utc>, i128) {
    (ts, seq.map_or(-1, i128::from))
}

/// Folds the batch's inserted messages into one delta per device.
pub fn deltas<'a>(
    inserted: impl IntoIterator<Item = (&'a str, &'a Telemetry)>,
) -> Vec<DeviceDelta> {
    let mut by_device: HashMap<&str, DeviceDelta> = HashMap::new();
    for (key, t) in inserted {
        let d = by_device
            .entry(&t.device_id)
            .or_insert_with(|| DeviceDelta {
                device_id: t.device_id.clone(),
                inserted: 0,
                oldest_ts: t.ts,
                newest_ts: t.ts,
                newest_seq: t.seq,
                newest_key: key.to_owned(),
                newest_readings: map_to_document(&t.readings),
            });
        d.inserted += 1;
        d.oldest_ts = d.oldest_ts.min(t.ts);
        if order(t.ts, t.seq) > order(d.newest_ts, d.newest_seq) {
            d.newest_ts = t.ts;
            d.newest_seq = t.seq;
            d.newest_key = key.to_owned();
            d.newest_readings = map_to_document(&t.readings);
        }
    }
    let mut out: Vec<_> = by_device.into_values().collect();
    out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    out
}

impl DeviceDelta {
    /// Upsert: count and first-seen, which commute and so cannot go wrong out of order.
    pub fn count_update(&self, now: DateTime<Utc>) -> (Document, Document) {
        (
            doc! {"_id": &self.device_id},
            doc! {
                "$inc": {"count": self.inserted},
                "$min": {"firstSeen": bson::DateTime::from_chrono(self.oldest_ts)},
                "$set": {"updatedAt": bson::DateTime::from_chrono(now)},
            },
        )
    }

    /// Conditional: matches only while the stored state is older than this batch's newest.
    pub fn state_update(&self) -> (Document, Document) {
        let ts = bson::DateTime::from_chrono(self.newest_ts);
        let mut older = vec![
            Bson::Document(doc! {"lastTs": {"$exists": false}}),
            Bson::Document(doc! {"lastTs": {"$lt": ts}}),
        ];
        if let Some(seq) = self.newest_seq {
            older.push(Bson::Document(
                doc! {"lastTs": ts, "lastSeq": {"$lt": seq_to_bson(seq)}},
            ));
        }
        let mut set = doc! {"lastTs": ts, "lastKey": &self.newest_key, "lastReadings": self.newest_readings.clone()};
        match self.newest_seq {
            Some(seq) => set.insert("lastSeq", seq_to_bson(seq)),
            None => set.insert("lastSeq", Bson::Null),
        };
        (
            doc! {"_id": &self.device_id, "$or": older},
            doc! {"$set": set},
        )
    }
}

/// The `updates` array of one ordered `update` command: per device, the counting
/// upsert first, then the conditional state update (which needs the document).
pub fn update_statements(deltas: Vec<DeviceDelta>, now: DateTime<Utc>) -> Vec<Document> {
    deltas
        .iter()
        .flat_map(|d| {
            let (q, u) = d.count_update(now);
            let (sq, su) = d.state_update();
            [
                doc! {"q": q, "u": u, "upsert": true},
                doc! {"q": sq, "u": su},
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn t(device: &str, seq: Option<u64>, ts_ms: i64, temp: f64) -> Telemetry {
        let mut body = json!({"deviceId": device, "ts": ts_ms, "readings": {"t": temp}});
        if let Some(s) = seq {
            body["seq"] = json!(s);
        }
        telemetry::validate(body.as_object().unwrap().clone(), &[], Utc::now()).unwrap()
    }

    #[test]
    fn a_batch_folds_into_one_delta_per_device_with_the_newest_state() {
        let ms = 1_767_225_600_000;
        let items = [
            t("a", Some(2), ms + 2_000, 2.0),
            t("a", Some(3), ms + 1_000, 3.0),
            t("a", Some(1), ms, 1.0),
            t("b", None, ms, 9.0),
        ];
        let keys = ["a#seq:2", "a#seq:3", "a#seq:1", "b#ts"];
        let d = deltas(keys.iter().copied().zip(items.iter()));
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].inserted, 3);
        assert_eq!(
            d[0].newest_key, "a#seq:2",
            "newest by ts, seq only breaks ties"
        );
        assert_eq!(d[0].oldest_ts.timestamp_millis(), ms);
        assert_eq!(d[1].newest_seq, None);
    }

    #[test]
    fn the_state_update_only_matches_older_state() {
        let d = &deltas([("a#seq:5", &t("a", Some(5), 1_767_225_600_000, 1.0))])[0];
        let (filter, update) = d.state_update();
        let or = filter.get_array("$or").unwrap();
        assert_eq!(or.len(), 3, "{filter}");
        assert_eq!(
            update
                .get_document("$set")
                .unwrap()
                .get_i64("lastSeq")
                .unwrap(),
            5
        );
    }

    #[test]
    fn each_device_counts_first_then_conditionally_sets_state() {
        let ms = 1_767_225_600_000;
        let items = [t("a", Some(1), ms, 1.0), t("b", Some(1), ms, 2.0)];
        let d = deltas([("a#seq:1", &items[0]), ("b#seq:1", &items[1])]);
        let s = update_statements(d, Utc::now());
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
