//! The exact audit after a chaos run: every unique valid message stored exactly once,
//! every invalid one dead-lettered (distinct offsets), device counts and `last`
//! exact, nothing else.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt as _;
use mongodb::bson::{Document, doc};
use telemetry::envelope::header as h;
use testkit::kafka;
use testkit::writer::Setup;

use super::workload::Expected;

#[derive(Debug, Default)]
pub struct Audit {
    pub lost: u64,
    pub duplicated: u64,
    pub extra: u64,
    pub dlq_missing: u64,
    pub device_errors: u64,
}

impl Audit {
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.extra == 0
            && self.dlq_missing == 0
            && self.device_errors == 0
    }
}

pub async fn audit(s: &Setup, expected: &Expected) -> Audit {
    let mut out = Audit::default();
    let db = s.db().await;
    let ids: Vec<Document> = db
        .collection::<Document>("telemetry")
        .find(doc! {})
        .projection(doc! {"_id": 1})
        .await
        .expect("find stored _ids")
        .try_collect()
        .await
        .expect("read stored _ids");
    let mut stored: HashMap<String, u64> = HashMap::new();
    for d in &ids {
        *stored
            .entry(d.get_str("_id").expect("string _id").to_owned())
            .or_default() += 1;
    }
    let all: HashSet<&String> = expected.keys.values().flatten().collect();
    out.lost = all.iter().filter(|k| !stored.contains_key(**k)).count() as u64;
    out.duplicated = stored.values().map(|n| n - 1).sum();
    out.extra = stored.keys().filter(|k| !all.contains(k)).count() as u64;

    let dead = kafka::read_all_on(&s.bootstrap, &s.dlq).await;
    let distinct: HashSet<(String, String)> = dead
        .iter()
        .filter_map(|m| {
            Some((
                kafka::header(m, h::ORIGINAL_PARTITION)?,
                kafka::header(m, h::ORIGINAL_OFFSET)?,
            ))
        })
        .collect();
    out.dlq_missing = (expected.invalid as u64).saturating_sub(distinct.len() as u64);
    if distinct.len() > expected.invalid {
        eprintln!(
            "chaos: {} distinct dead letters for {} invalid",
            distinct.len(),
            expected.invalid
        );
        out.extra += (distinct.len() - expected.invalid) as u64;
    }

    let devices = s.devices().await;
    for (device, keys) in &expected.keys {
        let Some(d) = devices.get(device) else {
            out.device_errors += 1;
            continue;
        };
        let count_ok = d.get_i64("count").ok() == Some(keys.len() as i64);
        let last_key = d
            .get_document("last")
            .ok()
            .and_then(|l| l.get_str("key").ok());
        let last_ok = last_key == expected.last.get(device).map(|l| l.2.as_str());
        if !(count_ok && last_ok) {
            eprintln!(
                "chaos: device {device}: {d} expected count {} last {:?}",
                keys.len(),
                expected.last.get(device)
            );
            out.device_errors += 1;
        }
    }
    out.device_errors += devices
        .keys()
        .filter(|d| !expected.keys.contains_key(*d))
        .count() as u64;
    out
}
