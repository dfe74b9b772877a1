//! Batches MongoDB cannot take as one transaction. In a binary of its own: its ~19 MB
//! transactions load the shared server, and tests in one binary run in parallel.

mod common;

use std::time::Duration;

use common::WRITER;
use testkit::kafka;
use testkit::writer::{Setup, Writer};

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_too_large_for_one_transaction_is_halved_until_it_is_stored() {
    let s = Setup::on_stack(WRITER).await;
    // 300 messages of ~63 KB from 300 devices: one batch of them is ~19 MB, more than
    // one transaction may hold (and its device update is one command over 16 MiB).
    let big = "x".repeat(250);
    let mut msgs: Vec<_> =
        telemetry::sample::Generator::new(300, 5, telemetry::sample::DEFAULT_START_MS)
            .take(300)
            .collect();
    for m in &mut msgs {
        let readings = m["readings"].as_object_mut().unwrap();
        for i in 0..250 {
            readings.insert(format!("r{i:03}"), serde_json::json!(big));
        }
    }
    // All on one partition: one batch holds them all.
    kafka::produce_telemetry_to(&s.bootstrap, &s.topic, Some(0), &msgs).await;
    let w = Writer::start(
        &s,
        "w",
        &[
            ("BATCH_LINGER_MS", "3000"),
            ("KAFKA_PREFETCH_KBYTES", "65536"),
            ("IN_FLIGHT_BYTES", "268435456"),
        ],
    );
    w.wait_ready().await;
    s.settled(300, Duration::from_secs(180)).await;
    assert_eq!(s.device_total().await, 300);
    assert_eq!(
        kafka::record_count(&s.dlq),
        0,
        "nothing dead-lettered: every message fits alone"
    );
    w.wait_metric("BatchSplits", 1.0).await;
    s.drop_db().await;
}
