//! bridgectl against the real local stack: replay -> esm -> sqs-to-kafka handler ->
//! Kafka -> writer -> MongoDB, dead letters and their redrive, and status.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e_tests::pipeline::Pipeline;
use mongodb::bson::doc;
use serde_json::Value;
use testkit::process::{Server, TempDir};
use testkit::{StackEnv, kafka, sqs, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_bridgectl-under-test");

#[tokio::test(flavor = "multi_thread")]
async fn replay_through_the_whole_pipeline_gives_exact_counts() {
    let p = Pipeline::new(BIN, StackEnv::get().kafka_bootstrap(), 5).await;
    let _writer = p.start_writer();
    let sent = p.replay_sample("events/iot/devices-20-seed-1.jsonl", Some(3));
    assert_eq!(sent["valid"], 1_200);
    assert!(
        sent["invalid"].as_u64().unwrap() > 20 && sent["duplicates"].as_u64().unwrap() > 20,
        "{sent}"
    );
    let esm: Value = serde_json::from_str(
        p.bridgectl(&["esm", "--until-empty", "--wait-time", "1", "--json"], &[])
            .trim(),
    )
    .unwrap();
    // SQS is at-least-once: a record may be received twice; storage below stays exact.
    assert!(esm["received"].as_u64() >= sent["sent"].as_u64(), "{esm}");
    assert_eq!(esm["failed"], 0);
    let unique = sent["unique_keys"].as_u64().unwrap();
    let invalid = sent["invalid"].as_i64().unwrap();
    p.settled(unique, invalid).await;
    assert_eq!(unique, 1_200);
    let (bootstrap, dlq) = (p.var("KAFKA_BOOTSTRAP_SERVERS"), p.var("KAFKA_DLQ_TOPIC"));
    let records = kafka::committed_and_high(bootstrap, p.var("KAFKA_GROUP_ID"), dlq).1;
    let dead = kafka::read_n(dlq, records as usize).await;
    let distinct: std::collections::HashSet<Vec<u8>> = dead
        .iter()
        .map(|m| rdkafka::Message::payload(m).unwrap().to_vec())
        .collect();
    assert_eq!(
        distinct.len() as i64,
        invalid,
        "every invalid message dead-lettered, each counted once"
    );
    assert_eq!(
        p.device_total().await,
        1_200,
        "device counts are exact despite {} duplicates",
        sent["duplicates"]
    );
    assert_eq!(p.sqs_depth("SQS_QUEUE_URL").await, (0, 0));
    assert_eq!(p.sqs_depth("SQS_DLQ_URL").await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_broker_down_messages_reach_the_sqs_dlq_and_a_redrive_stores_them_once() {
    let dir = TempDir::new("esm-broker");
    let mut broker = Server::nisshi(dir.path());
    broker.start();
    let p = Pipeline::new(BIN, &broker.address(), 2).await;
    let writer = p.start_writer();
    broker.stop();
    p.bridgectl(
        &[
            "replay",
            "--generate",
            "--devices",
            "5",
            "--count",
            "30",
            "--quiet",
        ],
        &[],
    );
    let fast_fail = [
        ("KAFKA_MESSAGE_TIMEOUT_MS", "1000"),
        ("BRIDGE_DEADLINE_MARGIN_MS", "0"),
    ];
    let esm = [
        "esm",
        "--until-empty",
        "--wait-time",
        "1",
        "--visibility-timeout",
        "2",
        "--function-timeout",
        "2s",
        "--json",
    ];
    let first: Value = serde_json::from_str(p.bridgectl(&esm, &fast_fail).trim()).unwrap();
    assert!(
        first["failed"].as_u64().unwrap() >= 30,
        "every message failed: {first}"
    );
    assert_eq!(first["deleted"], 0);
    assert_eq!(
        p.sqs_depth("SQS_DLQ_URL").await.0,
        30,
        "all 30 in the SQS DLQ after maxReceiveCount=2"
    );

    broker.start();
    let moved = p.bridgectl(&["dlq", "redrive", "--source", "sqs"], &[]);
    assert!(moved.contains("moved 30 messages"), "{moved}");
    p.bridgectl(&esm, &[]);
    p.settled(30, 0).await;
    assert_eq!(p.device_total().await, 30);
    assert_eq!(p.sqs_depth("SQS_DLQ_URL").await, (0, 0));
    writer.stop().await;
}

/// A Lambda Invoke endpoint whose function takes `duration` per invocation and
/// reports one transient failure: the record whose body is "fail-me". For a record
/// whose body is "bad-id" it names an itemIdentifier that is not in the batch.
struct FakeFunction {
    url: String,
    /// Records per invocation, in order.
    batches: Arc<Mutex<Vec<usize>>>,
    /// The most invocations that ran at once.
    most_at_once: Arc<AtomicUsize>,
}

async fn fake_function(duration: Duration) -> FakeFunction {
    use axum::{Json, Router, routing::post};
    let batches: Arc<Mutex<Vec<usize>>> = Arc::default();
    let (running, most_at_once) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (batches_in, running_in, most_in) = (
        Arc::clone(&batches),
        Arc::clone(&running),
        Arc::clone(&most_at_once),
    );
    let app = Router::new().route(
        "/2015-03-31/functions/sqs-to-kafka/invocations",
        post(move |Json(event): Json<Value>| {
            let (batches, running, most) = (
                Arc::clone(&batches_in),
                Arc::clone(&running_in),
                Arc::clone(&most_in),
            );
            async move {
                most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                // The function's own run time, as a slow Lambda would take.
                tokio::time::sleep(duration).await;
                running.fetch_sub(1, Ordering::SeqCst);
                let records = event["Records"].as_array().cloned().unwrap_or_default();
                batches.lock().unwrap().push(records.len());
                let failures: Vec<Value> = records
                    .iter()
                    .filter_map(|r| match r["body"].as_str() {
                        Some("fail-me") => {
                            Some(serde_json::json!({"itemIdentifier": r["messageId"]}))
                        }
                        Some("bad-id") => {
                            Some(serde_json::json!({"itemIdentifier": "not-in-this-batch"}))
                        }
                        _ => None,
                    })
                    .collect();
                Json(serde_json::json!({"batchItemFailures": failures}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeFunction {
        url,
        batches,
        most_at_once,
    }
}

/// Sends `bodies` to the queue, then runs `bridgectl esm` for exactly one batch
/// against the function at `url`; returns its JSON summary.
async fn esm_one_batch(
    p: &Pipeline,
    url: &str,
    bodies: &[&str],
    window: &str,
    visibility: &str,
) -> Value {
    let client = sqs::client().await;
    for body in bodies {
        client
            .send_message()
            .queue_url(p.var("SQS_QUEUE_URL"))
            .message_body(*body)
            .send()
            .await
            .unwrap();
    }
    let args = [
        "esm",
        "--invoke-url",
        url,
        "--max-batches",
        "1",
        "--concurrency",
        "1",
        "--batch-size",
        "10",
        "--batching-window",
        window,
        "--visibility-timeout",
        visibility,
        "--function-timeout",
        "1s",
        "--wait-time",
        "1",
        "--json",
    ];
    serde_json::from_str(p.bridgectl(&args, &[]).trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_received_again_within_the_batching_window_is_in_the_batch_once() {
    let p = Pipeline::new(BIN, StackEnv::get().kafka_bootstrap(), 5).await;
    let f = fake_function(Duration::ZERO).await;
    // Visibility 1 s: receives late in the 3 s window return the same three records again.
    let out = esm_one_batch(&p, &f.url, &["ok-1", "ok-2", "ok-3"], "3s", "1").await;
    assert_eq!(out["received"].as_u64(), Some(3), "{out}");
    assert_eq!(
        *f.batches.lock().unwrap(),
        vec![3],
        "each record once in the batch"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_esm_deletes_only_the_successes() {
    let p = Pipeline::new(BIN, StackEnv::get().kafka_bootstrap(), 5).await;
    let f = fake_function(Duration::ZERO).await;
    let client = sqs::client().await;
    let out = esm_one_batch(&p, &f.url, &["ok-1", "fail-me", "ok-2"], "1s", "2").await;
    assert_eq!(
        (
            out["received"].as_u64(),
            out["deleted"].as_u64(),
            out["failed"].as_u64()
        ),
        (Some(3), Some(2), Some(1)),
        "{out}"
    );
    assert_eq!(
        *f.batches.lock().unwrap(),
        vec![3],
        "one invocation with the whole batch"
    );
    let (visible, in_flight) = p.sqs_depth("SQS_QUEUE_URL").await;
    assert_eq!(
        visible + in_flight,
        1,
        "only the failure is left in the queue"
    );
    let again = wait_for(
        "the failed record to become visible again",
        Duration::from_secs(15),
        || async {
            let r = client
                .receive_message()
                .queue_url(p.var("SQS_QUEUE_URL"))
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
                )
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            r.messages().first().cloned()
        },
    )
    .await;
    assert_eq!(again.body(), Some("fail-me"));
    let count = &again.attributes().unwrap()
        [&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount];
    // At least 2: under load the ESM's window can outlast the 2 s visibility, and
    // receiving the record again (it is kept once in the batch) also counts.
    let count: u32 = count.parse().unwrap();
    assert!(count >= 2, "its receive count went up: {count}");
}

/// As on AWS: a response that names a record not in the batch fails the whole batch,
/// so nothing is deleted on a response that cannot be matched.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_item_identifier_fails_the_whole_batch() {
    let p = Pipeline::new(BIN, StackEnv::get().kafka_bootstrap(), 5).await;
    let f = fake_function(Duration::ZERO).await;
    let out = esm_one_batch(&p, &f.url, &["ok-1", "bad-id", "ok-2"], "1s", "2").await;
    assert_eq!(
        (
            out["received"].as_u64(),
            out["deleted"].as_u64(),
            out["failed"].as_u64()
        ),
        (Some(3), Some(0), Some(3)),
        "{out}"
    );
    let (visible, in_flight) = p.sqs_depth("SQS_QUEUE_URL").await;
    assert_eq!(
        visible + in_flight,
        3,
        "the whole batch is still in the queue"
    );
}

/// AWS adds pollers while messages wait; without that, a mapping that falls behind
/// at a steady rate never catches up.
#[tokio::test(flavor = "multi_thread")]
async fn the_esm_adds_pollers_while_messages_wait_up_to_its_maximum() {
    let p = Pipeline::new(BIN, StackEnv::get().kafka_bootstrap(), 5).await;
    let f = fake_function(Duration::from_millis(150)).await;
    let client = sqs::client().await;
    for chunk in 0..20 {
        let entries = (0..10).map(|i| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(format!("ok-{chunk}-{i}"))
                .build()
                .unwrap()
        });
        let sent = client
            .send_message_batch()
            .queue_url(p.var("SQS_QUEUE_URL"))
            .set_entries(Some(entries.collect()))
            .send()
            .await
            .unwrap();
        assert!(sent.failed().is_empty());
    }
    let args = [
        "esm",
        "--invoke-url",
        &f.url,
        "--concurrency",
        "1",
        "--max-concurrency",
        "4",
        "--batch-size",
        "10",
        "--wait-time",
        "1",
        "--until-empty",
        "--json",
    ];
    let out: Value = serde_json::from_str(p.bridgectl(&args, &[]).trim()).unwrap();
    assert_eq!(
        (out["received"].as_u64(), out["deleted"].as_u64()),
        (Some(200), Some(200)),
        "{out}"
    );
    // One poller alone would need 20 invocations of 150 ms: the backlog lasts long
    // enough for a step every 200 ms to reach the maximum.
    assert_eq!(out["peak_pollers"].as_u64(), Some(4), "{out}");
    let most = f.most_at_once.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&most),
        "invocations ran in parallel, never more than the maximum: {most} at once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_json_reports_what_independent_queries_see() {
    let p = Pipeline::new(BIN, StackEnv::get().kafka_bootstrap(), 5).await;
    let client = sqs::client().await;
    for i in 0..7 {
        client
            .send_message()
            .queue_url(p.var("SQS_QUEUE_URL"))
            .message_body(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    let payloads: Vec<_> =
        telemetry::sample::Generator::new(20, 1, telemetry::sample::DEFAULT_START_MS)
            .take(100)
            .collect();
    kafka::produce_telemetry(
        p.var("KAFKA_BOOTSTRAP_SERVERS"),
        p.var("KAFKA_TOPIC"),
        &payloads,
    )
    .await;
    kafka::produce_raw(
        p.var("KAFKA_BOOTSTRAP_SERVERS"),
        p.var("KAFKA_TOPIC"),
        &[("k".into(), b"garbage".to_vec())],
    )
    .await;

    let before: Value = serde_json::from_str(&p.bridgectl(&["status", "--json"], &[])).unwrap();
    assert_eq!(before["sqs"]["visible"], 7);
    assert_eq!(
        before["kafka"]["total_lag"], 101,
        "nothing consumed yet: {before}"
    );
    assert_eq!(before["mongodb"]["telemetry_documents"], 0);

    let _writer = p.start_writer();
    p.settled(100, 1).await;
    let after: Value = serde_json::from_str(&p.bridgectl(&["status", "--json"], &[])).unwrap();
    let (committed, high) = kafka::committed_and_high(
        p.var("KAFKA_BOOTSTRAP_SERVERS"),
        p.var("KAFKA_GROUP_ID"),
        p.var("KAFKA_TOPIC"),
    );
    let parts = after["kafka"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 6);
    assert_eq!(
        parts
            .iter()
            .map(|x| x["high_watermark"].as_i64().unwrap())
            .sum::<i64>(),
        high
    );
    assert_eq!(
        parts
            .iter()
            .map(|x| x["committed"].as_i64().unwrap_or(0))
            .sum::<i64>(),
        committed
    );
    assert_eq!(after["kafka"]["total_lag"], 0);
    assert_eq!(after["kafka"]["dlq_records"], 1);
    assert_eq!(after["mongodb"]["telemetry_documents"], p.docs().await);
    assert_eq!(after["mongodb"]["devices"], 20);
    assert!(
        after["mongodb"]["newest_ts"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-01T")
    );
}

/// Dead letters as earlier failures left them: one the writer now accepts (refused by an
/// older rule), one it refuses again, and one the Lambda refuses again.
async fn seed_dead_letters(p: &Pipeline) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let producer = kafka::producer();
    let writer = |reason: &'static str| {
        OwnedHeaders::new()
            .insert(Header {
                key: "dlq-stage",
                value: Some("kafka-to-mongo"),
            })
            .insert(Header {
                key: "dlq-kind",
                value: Some("invalid"),
            })
            .insert(Header {
                key: "dlq-reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "x-amzn-trace-id",
                value: Some("Root=1-5f84c7a1-example"),
            })
    };
    let records: [(&str, &str, OwnedHeaders); 3] = [
        (
            "dev-a",
            r#"{"deviceId":"dev-a","seq":1,"ts":"2026-01-01T00:00:00Z","readings":{"t":1}}"#,
            writer("invalid: /readings/t: an older rule"),
        ),
        (
            "dev-b",
            r#"{"deviceId":"dev-b","seq":1,"ts":"2026-01-01T00:00:00Z","readings":{"t":NaN}}"#,
            writer("invalid: /readings/t: must be a finite number"),
        ),
        (
            "msg-c",
            "not json",
            OwnedHeaders::new()
                .insert(Header {
                    key: "dlq-stage",
                    value: Some("sqs-to-kafka"),
                })
                .insert(Header {
                    key: "dlq-kind",
                    value: Some("unparseable"),
                })
                .insert(Header {
                    key: "dlq-reason",
                    value: Some("unparseable: body is not JSON"),
                }),
        ),
    ];
    for (key, value, headers) in records {
        producer
            .send(
                FutureRecord::to(p.var("KAFKA_DLQ_TOPIC"))
                    .key(key)
                    .payload(value)
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .expect("seed a dead letter");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_redrive_run_twice_sends_nothing_the_second_time() {
    let p = Pipeline::new(BIN, StackEnv::get().kafka_bootstrap(), 5).await;
    let writer = p.start_writer();
    seed_dead_letters(&p).await;
    let redrive = |extra: &[&str]| -> Value {
        let mut args = vec!["dlq", "redrive", "--source", "kafka", "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(p.bridgectl(&args, &[]).trim()).unwrap()
    };

    let dry = redrive(&["--dry-run"]);
    assert_eq!(
        (dry["to_topic"].as_u64(), dry["to_sqs"].as_u64()),
        (Some(2), Some(1)),
        "{dry}"
    );
    let only_b = redrive(&["--dry-run", "--reason", "FINITE", "--device", "dev-b"]);
    assert_eq!(only_b["to_topic"], 1, "{only_b}");
    assert_eq!(only_b["skipped"]["left out by the filters"], 2, "{only_b}");

    let first = redrive(&[]);
    assert_eq!(
        (first["to_topic"].as_u64(), first["to_sqs"].as_u64()),
        (Some(2), Some(1)),
        "a dry run records nothing: {first}"
    );
    // The Lambda takes the SQS one again and refuses it again; the writer stores A and refuses B again.
    p.bridgectl(&["esm", "--until-empty", "--wait-time", "1", "--json"], &[]);
    p.settled(1, 5).await;

    let dead = kafka::read_all_on(p.var("KAFKA_BOOTSTRAP_SERVERS"), p.var("KAFKA_DLQ_TOPIC")).await;
    assert_eq!(dead.len(), 5, "3 seeded + B and C refused again");
    let dlq = p.var("KAFKA_DLQ_TOPIC");
    let mut marks: Vec<(String, String, Option<String>)> = dead[3..]
        .iter()
        .map(|m| {
            let h = |n| kafka::header(m, n).unwrap_or_default();
            (
                h("redrive-origin"),
                h("redrive-count"),
                kafka::header(m, "dlq-stage"),
            )
        })
        .collect();
    marks.sort();
    assert_eq!(
        marks,
        vec![
            (
                format!("{dlq}/0/1"),
                "1".to_owned(),
                Some("kafka-to-mongo".to_owned())
            ),
            (
                format!("{dlq}/0/2"),
                "1".to_owned(),
                Some("sqs-to-kafka".to_owned())
            ),
        ],
        "both hops copy the mark into the new dead letter"
    );
    let b_again = dead[3..]
        .iter()
        .find(|m| kafka::header(m, "dlq-stage").as_deref() == Some("kafka-to-mongo"))
        .unwrap();
    assert_eq!(
        kafka::header(b_again, "x-amzn-trace-id").as_deref(),
        Some("Root=1-5f84c7a1-example"),
        "the trace survives the round trip"
    );

    let second = redrive(&[]);
    assert_eq!(
        second["to_topic"].as_u64().unwrap() + second["to_sqs"].as_u64().unwrap(),
        0,
        "{second}"
    );
    assert_eq!(second["skipped"]["already redriven"], 3, "{second}");
    assert_eq!(
        second["skipped"]["came back after a redrive (see --again)"], 2,
        "{second}"
    );
    let capped = redrive(&["--again", "--max-redrives", "1"]);
    assert_eq!(
        capped["skipped"]["redriven --max-redrives times already"], 2,
        "{capped}"
    );
    assert_eq!(
        capped["to_topic"].as_u64().unwrap() + capped["to_sqs"].as_u64().unwrap(),
        0,
        "{capped}"
    );
    assert_eq!(p.docs().await, 1);
    assert_eq!(p.device_total().await, 1);
    writer.stop().await;
}
