//! The devices page: one device's state (`devices.last`, first and last seen, count)
//! and its last readings, in either collection type; or the ids that start with what
//! was typed.

use std::collections::BTreeMap;

use bson::{Bson, Document, doc};
use futures::TryStreamExt as _;
use telemetry::document::Layout;

use crate::common::StoreArgs;

pub const READINGS: i64 = 50;

#[derive(Debug, Clone, Default)]
pub struct DeviceView {
    pub id: String,
    pub count: Option<i64>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// `devices.last` as relaxed extended JSON, pretty.
    pub last: Option<String>,
    /// Oldest first: (epoch ms, numeric readings by name).
    pub readings: Vec<(i64, BTreeMap<String, f64>)>,
}

pub enum Found {
    Device(Box<DeviceView>),
    /// No device has this id; these ones start with it.
    Candidates(Vec<String>),
}

/// How the telemetry collection stores a device's id: it depends on its type.
pub async fn layout(db: &mongodb::Database, store: &StoreArgs) -> anyhow::Result<Layout> {
    let timeseries = crate::status::collection_type(db, &store.collection).await? == "timeseries";
    Ok(if timeseries {
        Layout::TimeSeries
    } else {
        Layout::Regular
    })
}

pub async fn find(
    db: &mongodb::Database,
    store: &StoreArgs,
    layout: Layout,
    id: &str,
) -> anyhow::Result<Found> {
    let devices = db.collection::<Document>(&store.devices_collection);
    let Some(state) = devices.find_one(doc! {"_id": id}).await? else {
        // A range on _id, not a regex: what is typed is never a pattern.
        let upper = format!("{id}\u{10ffff}");
        let ids = devices
            .find(doc! {"_id": {"$gte": id, "$lt": upper}})
            .projection(doc! {"_id": 1})
            .sort(doc! {"_id": 1})
            .limit(20)
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .into_iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect();
        return Ok(Found::Candidates(ids));
    };
    let time = |d: &Document, k: &str| {
        d.get_datetime(k)
            .ok()
            .and_then(|t| t.try_to_rfc3339_string().ok())
    };
    let last = state.get_document("last").ok();
    let mut view = DeviceView {
        id: id.to_owned(),
        count: match state.get("count") {
            Some(Bson::Int64(n)) => Some(*n),
            Some(Bson::Int32(n)) => Some(i64::from(*n)),
            _ => None,
        },
        first_seen: time(&state, "firstSeen"),
        last_seen: last.and_then(|l| time(l, "ts")),
        last: last.map(|l| {
            serde_json::to_string_pretty(&Bson::Document(l.clone()).into_relaxed_extjson())
                .unwrap_or_default()
        }),
        readings: Vec::new(),
    };
    let docs: Vec<Document> = db
        .collection::<Document>(&store.collection)
        .find(doc! {layout.device_field(): id})
        .sort(doc! {"ts": -1})
        .limit(READINGS)
        .projection(doc! {"ts": 1, "readings": 1})
        .await?
        .try_collect()
        .await?;
    view.readings = readings(&docs);
    Ok(Found::Device(Box::new(view)))
}

/// Numeric readings, oldest first (the query returns newest first).
pub fn readings(docs: &[Document]) -> Vec<(i64, BTreeMap<String, f64>)> {
    let mut out: Vec<(i64, BTreeMap<String, f64>)> = docs
        .iter()
        .filter_map(|d| {
            let ts = d.get_datetime("ts").ok()?.timestamp_millis();
            let values = d
                .get_document("readings")
                .map(|r| {
                    r.iter()
                        .filter_map(|(k, v)| {
                            let x = match v {
                                Bson::Double(x) => *x,
                                Bson::Int32(x) => f64::from(*x),
                                Bson::Int64(x) => *x as f64,
                                _ => return None,
                            };
                            x.is_finite().then(|| (k.clone(), x))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some((ts, values))
        })
        .collect();
    out.sort_by_key(|(t, _)| *t);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_keep_numbers_only_oldest_first() {
        let at = |ms| bson::DateTime::from_millis(ms);
        let docs = vec![
            doc! {"ts": at(2_000), "readings": {"t": 21.5, "status": "idle", "n": 3_i32}},
            doc! {"ts": at(1_000), "readings": {"t": 20.0, "big": 5_i64}},
            doc! {"readings": {"t": 1.0}},
        ];
        let r = readings(&docs);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, 1_000);
        assert_eq!(r[0].1.get("big"), Some(&5.0));
        assert_eq!(r[1].1.get("t"), Some(&21.5));
        assert_eq!(r[1].1.get("n"), Some(&3.0));
        assert!(!r[1].1.contains_key("status"));
    }
}
