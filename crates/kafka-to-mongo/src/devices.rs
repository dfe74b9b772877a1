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
    /// Time-series mode: the partition that applies this delta, recorded in the
    /// device's state (`partition`): a device seen on two partitions is checked.
    pub partition: Option<i32>,
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
                partition: None,
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
    fn set(&self, now: DateTime<Utc>) -> RawDocumentBuf {
        let mut set = rawdoc! {"updatedAt": bson::DateTime::from_chrono(now)};
        if let Some(p) = self.partition {
            set.append("partition", p);
        }
        set
    }

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
                "$set": self.set(now),
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
    use std::cmp::Ordering;

    use bson::{Bson, Document, doc};
    use proptest::prelude::*;
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

    // -----------------------------------------------------------------------------------
    // `$max` on the real `last` document, under MongoDB's comparison order

    /// MongoDB's canonical type order (bsontypes.h `canonicalizeBSONType`) for the types
    /// `last` holds.
    fn type_rank(b: &Bson) -> u8 {
        match b {
            Bson::Null => 5,
            Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 10,
            Bson::String(_) => 15,
            Bson::Document(_) => 20,
            Bson::DateTime(_) => 45,
            other => panic!("not a type of `last`: {other:?}"),
        }
    }

    /// The integer a finite Decimal128 (IEEE 754-2008 BID, as BSON stores it) holds, when
    /// its exponent is not negative: all `seq_to_raw` writes. Anything else panics.
    fn decimal128_integer(d: &bson::Decimal128) -> i128 {
        let bits = u128::from_le_bytes(d.bytes());
        assert_ne!(
            (bits >> 125) & 0b11,
            0b11,
            "{d}: not a finite small-form decimal"
        );
        let exponent = u32::try_from(((bits >> 113) & 0x3fff) as i64 - 6176)
            .unwrap_or_else(|_| panic!("{d}: a fraction"));
        let coefficient = i128::try_from(bits & ((1 << 113) - 1)).unwrap();
        let value = 10i128
            .checked_pow(exponent)
            .and_then(|scale| coefficient.checked_mul(scale))
            .unwrap_or_else(|| panic!("{d}: beyond i128"));
        if bits >> 127 == 1 { -value } else { value }
    }

    /// Numbers of every type compare by value. `last` holds integers (seq: Int64 or
    /// Decimal128) and doubles (readings), never the two in the same place.
    fn cmp_numbers(a: &Bson, b: &Bson) -> Ordering {
        let integer = |x: &Bson| match x {
            Bson::Int32(i) => Some(i128::from(*i)),
            Bson::Int64(i) => Some(i128::from(*i)),
            Bson::Decimal128(d) => Some(decimal128_integer(d)),
            _ => None,
        };
        match (a, b, integer(a), integer(b)) {
            (_, _, Some(x), Some(y)) => x.cmp(&y),
            (Bson::Double(x), Bson::Double(y), _, _) => x.total_cmp(y),
            _ => panic!("an integer against a double is not used here: {a:?} vs {b:?}"),
        }
    }

    /// MongoDB's comparison of two BSON values (simple collation: strings by bytes).
    fn bson_cmp(a: &Bson, b: &Bson) -> Ordering {
        type_rank(a).cmp(&type_rank(b)).then_with(|| match (a, b) {
            (Bson::Null, Bson::Null) => Ordering::Equal,
            (Bson::DateTime(x), Bson::DateTime(y)) => {
                x.timestamp_millis().cmp(&y.timestamp_millis())
            }
            (Bson::String(x), Bson::String(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Bson::Document(x), Bson::Document(y)) => cmp_documents(x, y),
            _ => cmp_numbers(a, b),
        })
    }

    /// Documents field by field in stored order: the value's type, then the field name,
    /// then the value; a document that runs out first is less (`BSONObj::woCompare`).
    fn cmp_documents(x: &Document, y: &Document) -> Ordering {
        for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
            let c = type_rank(vx)
                .cmp(&type_rank(vy))
                .then_with(|| kx.as_bytes().cmp(ky.as_bytes()))
                .then_with(|| bson_cmp(vx, vy));
            if c != Ordering::Equal {
                return c;
            }
        }
        x.len().cmp(&y.len())
    }

    #[test]
    fn the_comparator_orders_seqs_by_value_across_int64_and_decimal128() {
        let seq = |s: u64| {
            plain(&rawdoc! {"s": seq_to_raw(s)})
                .get("s")
                .unwrap()
                .clone()
        };
        let (max, above, big) = (i64::MAX as u64, 1u64 << 63, 10_000_000_000_000_000_000);
        assert!(matches!(seq(max), Bson::Int64(_)));
        assert!(matches!(seq(above), Bson::Decimal128(_)));
        assert_eq!(bson_cmp(&seq(max), &seq(above)), Ordering::Less);
        assert_eq!(bson_cmp(&seq(above), &seq(big)), Ordering::Less);
        assert_eq!(bson_cmp(&seq(big), &seq(u64::MAX)), Ordering::Less);
        assert_eq!(bson_cmp(&seq(u64::MAX), &seq(u64::MAX)), Ordering::Equal);
        assert_eq!(bson_cmp(&Bson::Null, &seq(0)), Ordering::Less);
        let as_text = Bson::String(big.to_string());
        assert_eq!(
            bson_cmp(&seq(u64::MAX), &as_text),
            Ordering::Less,
            "numbers < strings"
        );
    }

    /// Seqs around the places where their BSON form changes, and anywhere.
    fn seq_value() -> impl Strategy<Value = u64> {
        const I64_MAX: u64 = i64::MAX as u64;
        prop_oneof![
            any::<u64>(),
            0..8u64,
            (I64_MAX - 2)..=(I64_MAX + 2),
            9_999_999_999_999_999_998..=10_000_000_000_000_000_002u64,
            (u64::MAX - 2)..=u64::MAX,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(256)
        })]

        /// Messages of one device arrive in any order, in batches of any size; each batch
        /// becomes a `DeviceDelta`, whose `last` is `$max`ed into the state. The state ends
        /// at the newest message by the README's order: ts, then seq, a missing seq lowest.
        /// (ts from a few values, so seq often decides.)
        #[test]
        fn max_of_the_real_last_is_the_newest_by_ts_then_seq(
            messages in prop::collection::vec(
                (0..3i64, prop::option::of(seq_value()), any::<bool>()),
                1..24,
            ),
        ) {
            let base = 1_767_225_600_000_i64;
            // A seq is the idempotency key: a second message with it is a duplicate,
            // dropped before the device state (it inserts nothing).
            let mut seen = std::collections::HashSet::new();
            let mut stored = Vec::new();
            for (i, &(dt, seq, new_batch)) in messages.iter().enumerate() {
                if seq.is_none_or(|s| seen.insert(s)) {
                    let ts = base + dt * 1_000;
                    let key = match seq {
                        Some(s) => format!("d#seq:{s}"),
                        None => format!("d#ts:{ts}:{i:016x}"),
                    };
                    stored.push((new_batch, t(&key, "d", seq, ts, i as f64)));
                }
            }
            let mut batches: Vec<Vec<Prepared>> = Vec::new();
            for (new_batch, p) in stored.iter().cloned() {
                match batches.last_mut() {
                    Some(batch) if !new_batch => batch.push(p),
                    _ => batches.push(vec![p]),
                }
            }
            let mut state: Option<Document> = None;
            for batch in &batches {
                let d = deltas(batch);
                prop_assert_eq!(d.len(), 1);
                let candidate = plain(&d[0].last());
                // `$max`: the field takes the new value only if it is greater.
                if state.as_ref().is_none_or(|cur| cmp_documents(&candidate, cur).is_gt()) {
                    state = Some(candidate);
                }
            }
            let state = state.unwrap();
            let newest = stored
                .iter()
                .map(|(_, p)| p)
                .max_by_key(|p| order(p.ts, p.seq))
                .unwrap();
            prop_assert_eq!(
                state.get_datetime("ts").unwrap().timestamp_millis(),
                newest.ts.timestamp_millis(),
                "{:?}", messages
            );
            let seq = state.get("seq").unwrap();
            match newest.seq {
                None => prop_assert_eq!(seq, &Bson::Null, "{:?}", messages),
                Some(s) => {
                    let value = match seq {
                        Bson::Int64(v) if *v >= 0 => u64::try_from(*v).ok(),
                        Bson::Decimal128(d) if s > i64::MAX as u64 => d.to_string().parse().ok(),
                        _ => None,
                    };
                    prop_assert_eq!(value, Some(s), "{:?} for {} in {:?}", seq, s, messages);
                    // seqs are unique, so the newest is one message.
                    prop_assert_eq!(state.get_str("key").unwrap(), newest.key.as_str());
                }
            }
        }
    }
}
