//! Exactly-once storage on the real stack: every message once, replays only count duplicates,
//! invalid messages dead-lettered with reasons, offsets committed past both.

mod common;

use std::time::Duration;

use common::WRITER;
use mongodb::bson::{Document, doc};
use rdkafka::Message as _;
use telemetry::envelope::header as h;
use testkit::kafka;
use testkit::writer::{Setup, Writer, payloads};

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_messages_become_ten_thousand_documents_and_a_replay_only_counts_duplicates() {
    let s = Setup::on_stack(WRITER).await;
    let writer = s.writer("w");
    writer.wait_ready().await;
    let msgs = payloads(10_000);
    s.produce(&msgs).await;
    s.settled(10_000, Duration::from_secs(180)).await;

    s.produce(&msgs).await; // the same 10,000 again, as an SQS redelivery storm would
    writer.wait_metric("Duplicates", 10_000.0).await;
    s.settled(10_000, Duration::from_secs(180)).await;
    let m = writer.metric_totals();
    assert_eq!(
        (m["DocumentsInserted"], m["Duplicates"], m["DeadLettered"]),
        (10_000.0, 10_000.0, 0.0),
        "{m:?}"
    );

    let devices = s.devices().await;
    assert_eq!(devices.len(), 20);
    let counted: i64 = devices.values().map(|d| d.get_i64("count").unwrap()).sum();
    assert_eq!(
        counted, 10_000,
        "device counts add up to the stored documents"
    );
    let one = s
        .db()
        .await
        .collection::<Document>("telemetry")
        .find_one(doc! {"_id": "thermo-0001#seq:1"})
        .await
        .unwrap();
    let one = one.expect("thermo-0001's first message is stored under its idempotency key");
    assert_eq!(one.get_str("deviceId").unwrap(), "thermo-0001");
    assert!(one.get_datetime("ts").is_ok() && one.get_datetime("ingestedAt").is_ok());
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_messages_go_to_the_dead_letter_topic_with_reasons_and_offsets_move_past_them() {
    let s = Setup::on_stack(WRITER).await;
    let writer = s.writer("w");
    writer.wait_ready().await;
    let valid = payloads(300);
    s.produce(&valid).await;
    let bad: Vec<(String, Vec<u8>)> = vec![
        ("d".into(), br#"{"deviceId":"thermo-0001","seq":999999,"ts":"yesterday","readings":{"t":1}}"#.to_vec()),
        ("d".into(), b"not json at all".to_vec()),
        ("d".into(), br#"{"deviceId":"thermo-0001","seq":999998,"ts":1767225600000,"readings":{"t":{"nested":1}}}"#.to_vec()),
    ];
    kafka::produce_raw(&s.bootstrap, &s.topic, &bad).await;
    s.settled(300, Duration::from_secs(120)).await;

    let dead = kafka::read_n(&s.dlq, 3).await;
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|m| kafka::header(m, h::DLQ_REASON).unwrap())
        .collect();
    reasons.sort();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("/ts: must be an RFC 3339")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("unparseable")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("/readings/t: must be a finite number, a boolean or a string")),
        "{reasons:?}"
    );
    for m in &dead {
        assert_eq!(kafka::header(m, h::ORIGINAL_TOPIC).unwrap(), s.topic);
        assert!(
            kafka::header(m, h::ORIGINAL_OFFSET)
                .unwrap()
                .parse::<i64>()
                .is_ok()
        );
        assert!(
            kafka::header(m, h::ORIGINAL_PARTITION).is_some()
                && kafka::header(m, h::ORIGINAL_TIMESTAMP).is_some()
        );
        assert_eq!(kafka::header(m, h::DLQ_STAGE).unwrap(), "kafka-to-mongo");
        let original = bad
            .iter()
            .any(|(_, v)| v.as_slice() == m.payload().unwrap());
        assert!(original, "the dead-letter value is the original bytes");
    }
    let violations: serde_json::Value =
        serde_json::from_str(&kafka::header(&dead[0], h::DLQ_VIOLATIONS).unwrap()).unwrap();
    assert!(violations.is_array());
    assert_eq!(
        s.committed_and_high().0,
        303,
        "committed past valid and invalid alike"
    );
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_in_flight_budget_of_one_batch_still_drains_every_partition_exactly() {
    let s = Setup::on_stack(WRITER).await;
    // Six partitions take turns at room for one batch: none may starve or deadlock.
    let writer = Writer::start(
        &s,
        "w",
        &[("BATCH_SIZE", "50"), ("IN_FLIGHT_MESSAGES", "50")],
    );
    writer.wait_ready().await;
    let msgs = payloads(1_200);
    s.produce(&msgs).await;
    s.settled(1_200, Duration::from_secs(120)).await;
    let counted: i64 = s
        .devices()
        .await
        .values()
        .map(|d| d.get_i64("count").unwrap())
        .sum();
    assert_eq!(counted, 1_200);
    s.drop_db().await;
}
