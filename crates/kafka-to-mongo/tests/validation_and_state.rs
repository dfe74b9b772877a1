//! What reaches MongoDB: never an operator or a dotted path; device state right
//! under out-of-order and duplicate delivery; a document MongoDB refuses is
//! dead-lettered without holding back the rest.

mod common;

use std::time::Duration;

use common::WRITER;
use mongodb::bson::{Document, doc};
use serde_json::{Map, Value, json};
use telemetry::envelope::header as h;
use testkit::kafka;
use testkit::writer::{Setup, payloads};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_and_dotted_keys_are_dead_lettered_and_never_reach_mongodb() {
    let s = Setup::on_stack(WRITER).await;
    let writer = s.writer("w");
    writer.wait_ready().await;
    let attacks = [
        json!({"deviceId": "evil-1", "seq": 1, "ts": 1767225600000i64, "readings": {"$where": "sleep(100)"}}),
        json!({"deviceId": "evil-1", "seq": 2, "ts": 1767225600000i64, "readings": {"t": 1}, "$set": {"admin": true}}),
        json!({"deviceId": "evil-1", "seq": 3, "ts": 1767225600000i64, "readings": {"t": 1}, "meta": {"a.b": {"$gt": ""}}}),
    ];
    let attacks: Vec<_> = attacks.into_iter().map(obj).collect();
    s.produce(&attacks).await;
    let dead = kafka::read_n(&s.dlq, 3).await;
    for m in &dead {
        let violations = kafka::header(m, h::DLQ_VIOLATIONS).unwrap();
        assert!(violations.contains("reserved_key"), "{violations}");
    }
    s.settled(0, Duration::from_secs(30)).await;
    let db = s.db().await;
    assert_eq!(
        db.collection::<Document>("telemetry")
            .count_documents(doc! {})
            .await
            .unwrap(),
        0
    );
    assert!(
        s.devices().await.is_empty(),
        "no device state from refused messages"
    );
    s.drop_db().await;
}

/// A reading whose text looks like a field path: it must be stored as text.
fn reading(device: &str, seq: Option<u64>, ts_ms: i64) -> Map<String, Value> {
    let readings = json!({"v": ts_ms % 100_000, "note": "$count"});
    let mut m = obj(json!({"deviceId": device, "ts": ts_ms, "readings": readings}));
    if let Some(seq) = seq {
        m.insert("seq".into(), json!(seq));
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn device_state_is_the_newest_with_an_exact_count_under_out_of_order_and_duplicates() {
    let s = Setup::on_stack(WRITER).await;
    let writer = s.writer("w");
    writer.wait_ready().await;
    let base = 1_767_225_600_000i64;
    let with_seq = |seq: u64| reading("ooo-1", Some(seq), base + seq as i64 * 1_000);
    let without_seq = |i: i64| reading("ooo-2", None, base + i * 1_000);

    // The newest half first, shuffled; then the older half and redeliveries of both halves.
    let mut newer: Vec<_> = (31..=60).rev().map(with_seq).collect();
    newer.extend((11..=20).rev().map(without_seq));
    newer.swap(3, 17);
    s.produce(&newer).await;
    s.settled(40, Duration::from_secs(60)).await;
    let mut older: Vec<_> = (1..=30).map(with_seq).collect();
    older.extend((1..=10).map(without_seq));
    older.extend((55..=60).map(with_seq)); // duplicates
    older.extend((15..=20).map(without_seq)); // duplicates
    s.produce(&older).await;
    s.settled(80, Duration::from_secs(60)).await;
    writer.wait_metric("Duplicates", 12.0).await;

    let devices = s.devices().await;
    let d1 = &devices["ooo-1"];
    let last1 = d1.get_document("last").unwrap();
    assert_eq!(d1.get_i64("count").unwrap(), 60);
    assert_eq!(last1.get_i64("seq").unwrap(), 60);
    assert_eq!(last1.get_str("key").unwrap(), "ooo-1#seq:60");
    assert_eq!(
        last1.get_datetime("ts").unwrap().timestamp_millis(),
        base + 60_000
    );
    assert_eq!(
        d1.get_datetime("firstSeen").unwrap().timestamp_millis(),
        base + 1_000
    );
    let readings = last1.get_document("readings").unwrap();
    assert_eq!(readings.get_i64("v").unwrap(), (base + 60_000) % 100_000);
    assert_eq!(
        readings.get_str("note").unwrap(),
        "$count",
        "a message's value is never evaluated as a path"
    );
    let d2 = &devices["ooo-2"];
    let last2 = d2.get_document("last").unwrap();
    assert_eq!(d2.get_i64("count").unwrap(), 20);
    assert_eq!(
        last2.get_datetime("ts").unwrap().timestamp_millis(),
        base + 20_000
    );
    assert_eq!(last2.get("seq"), Some(&bson::Bson::Null));
    assert_eq!(
        d2.get_datetime("firstSeen").unwrap().timestamp_millis(),
        base + 1_000
    );
    s.drop_db().await;
}

/// Seqs above i64::MAX are stored as Decimal128 (BSON has no u64), which MongoDB compares
/// with Int64 and with each other by value. As decimal strings they compared as text:
/// "9223372036854775808" > "18446744073709551615", so `$max` went back to an older seq.
#[tokio::test(flavor = "multi_thread")]
async fn last_seq_follows_the_numeric_order_beyond_i64_max() {
    let s = Setup::on_stack(WRITER).await;
    let writer = s.writer("w");
    writer.wait_ready().await;
    let ts = 1_767_225_600_000i64;
    let i64_max = i64::MAX as u64;
    let ten_pow_19 = 10_000_000_000_000_000_000u64;
    let msg = |seq: u64| reading("big-1", Some(seq), ts);
    // The largest first, each round its own batch, so `$max` compares the stored `last`
    // with every smaller one.
    let rounds = [vec![u64::MAX], vec![ten_pow_19], vec![i64_max + 1, i64_max]];
    let mut stored = 0;
    for round in &rounds {
        let msgs: Vec<_> = round.iter().copied().map(msg).collect();
        s.produce(&msgs).await;
        stored += msgs.len() as u64;
        s.settled(stored, Duration::from_secs(60)).await;
        let devices = s.devices().await;
        let d = &devices["big-1"];
        assert_eq!(d.get_i64("count").unwrap(), stored as i64);
        let last = d.get_document("last").unwrap();
        match last.get("seq") {
            Some(bson::Bson::Decimal128(seq)) => assert_eq!(
                seq.to_string(),
                u64::MAX.to_string(),
                "after seqs {round:?}: last.seq must stay the largest"
            ),
            other => panic!("after seqs {round:?}: last.seq {other:?}, not a Decimal128"),
        }
        assert_eq!(
            last.get_str("key").unwrap(),
            format!("big-1#seq:{}", u64::MAX)
        );
        assert_eq!(last.get_datetime("ts").unwrap().timestamp_millis(), ts);
    }

    // Every telemetry document keeps its exact seq: Int64 up to i64::MAX, Decimal128 above.
    let db = s.db().await;
    let telemetry = db.collection::<Document>("telemetry");
    for seq in [u64::MAX, ten_pow_19, i64_max + 1, i64_max] {
        let id = format!("big-1#seq:{seq}");
        let stored = telemetry
            .find_one(doc! {"_id": &id})
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} not stored"));
        match (stored.get("seq"), i64::try_from(seq)) {
            (Some(bson::Bson::Int64(v)), Ok(expected)) => assert_eq!(*v, expected, "{id}"),
            (Some(bson::Bson::Decimal128(d)), Err(_)) => {
                assert_eq!(d.to_string(), seq.to_string(), "{id}");
            }
            (other, _) => panic!("{id}: seq stored as {other:?}"),
        }
    }
    // The server agrees that the seqs are numbers in numeric order.
    let newest = telemetry
        .find_one(doc! {"deviceId": "big-1"})
        .sort(doc! {"seq": -1})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        newest.get_str("_id").unwrap(),
        format!("big-1#seq:{}", u64::MAX)
    );
    assert_eq!(
        telemetry
            .count_documents(doc! {"deviceId": "big-1", "seq": {"$gt": i64::MAX}})
            .await
            .unwrap(),
        3,
        "the Decimal128 seqs compare above the Int64 i64::MAX"
    );
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_mongodb_refuses_is_dead_lettered_and_the_rest_are_stored() {
    let s = Setup::on_stack(WRITER).await;
    // An operator's validator: temperatures above 1000 are sensor faults.
    let validator = doc! {"$jsonSchema": {"properties": {"readings": {"properties": {"temperature_c": {"maximum": 1000}}}}}};
    s.db()
        .await
        .create_collection("telemetry")
        .validator(validator)
        .await
        .unwrap();
    let writer = s.writer("w");
    writer.wait_ready().await;
    let mut msgs = payloads(200);
    let thermo: Vec<usize> = msgs
        .iter()
        .enumerate()
        .filter(|(_, m)| m["readings"].get("temperature_c").is_some())
        .map(|(i, _)| i)
        .collect();
    for i in &thermo[..2] {
        msgs[*i]["readings"]["temperature_c"] = json!(5000.0);
    }
    s.produce(&msgs).await;
    s.settled(198, Duration::from_secs(60)).await;
    let dead = kafka::read_n(&s.dlq, 2).await;
    for m in &dead {
        let reason = kafka::header(m, h::DLQ_REASON).unwrap();
        assert!(
            reason.contains("refused by the store: MongoDB error 121"),
            "{reason}"
        );
        assert_eq!(kafka::header(m, h::DLQ_KIND).unwrap(), "refused");
    }
    writer.wait_metric("DocumentsInserted", 198.0).await;
    writer.wait_metric("DeadLettered", 2.0).await;
    let m = writer.metric_totals();
    assert_eq!((m["DocumentsInserted"], m["DeadLettered"]), (198.0, 2.0));
    s.drop_db().await;
}
