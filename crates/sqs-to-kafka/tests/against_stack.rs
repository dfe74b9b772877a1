//! The Lambda's batch handling against the real local broker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use clap::Parser;
use rdkafka::Message;
use serde_json::Value;
use sqs_to_kafka::batch::Kind;
use sqs_to_kafka::{Bridge, Config, Outcome};
use telemetry::envelope::header as h;
use telemetry::murmur2::partition_for_key;
use testkit::args::LambdaArgs;
use testkit::{StackEnv, kafka, unique};

const VALID_10: &str = include_str!("../../../events/sqs/valid-batch-10.json");
const MIXED: &str = include_str!("../../../events/sqs/mixed-batch.json");
const DUPLICATE: &str = include_str!("../../../events/sqs/duplicate-different-ids.json");
const BATCH_100: &str = include_str!("../../../events/sqs/batch-100.json");
const PARTITIONS: i32 = 6;

fn records(json: &str) -> Vec<SqsMessage> {
    serde_json::from_str::<SqsEvent>(json).unwrap().records
}

fn config(args: LambdaArgs) -> Config {
    Config::try_parse_from(args.argv()).unwrap()
}

/// A bridge on the stack's broker with fresh telemetry and dead-letter topics.
async fn bridge() -> (Bridge, String, String) {
    let (topic, dlq) = (unique("telemetry"), unique("dlq"));
    kafka::create_topic(&topic, PARTITIONS).await;
    kafka::create_topic(&dlq, 1).await;
    let args = LambdaArgs::local(StackEnv::get().kafka_bootstrap())
        .topic(&topic)
        .dlq_topic(&dlq);
    let b = Bridge::connect(config(args)).await.unwrap();
    (b, topic, dlq)
}

fn in_30s() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn body_json(r: &SqsMessage) -> Value {
    serde_json::from_str(r.body.as_deref().unwrap()).unwrap()
}

#[tokio::test]
async fn a_valid_batch_lands_keyed_by_device_on_javas_partition_with_its_headers() {
    let (bridge, topic, _) = bridge().await;
    let batch = records(VALID_10);
    let report = bridge.process(&batch, in_30s()).await.unwrap();
    assert!(
        report.response().batch_item_failures.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.count(Kind::Delivered), 10);

    let by_id: HashMap<String, &SqsMessage> = batch
        .iter()
        .map(|r| (r.message_id.clone().unwrap(), r))
        .collect();
    let got = kafka::read_n(&topic, 10).await;
    assert_eq!(
        kafka::record_count(&topic),
        10,
        "exactly one record per SQS message"
    );
    for m in &got {
        let sqs_id = kafka::header(m, h::SQS_MESSAGE_ID).unwrap();
        let original = by_id[&sqs_id];
        let body = body_json(original);
        let key = std::str::from_utf8(m.key().unwrap()).unwrap();
        assert_eq!(key, body["deviceId"], "key = deviceId");
        assert_eq!(
            m.partition(),
            partition_for_key(key.as_bytes(), PARTITIONS),
            "Java murmur2 partition for {key}"
        );
        let expected_key = telemetry::frame(original.body.as_deref().unwrap())
            .unwrap()
            .key;
        assert_eq!(kafka::header(m, h::IDEMPOTENCY_KEY).unwrap(), expected_key);
        assert_eq!(kafka::header(m, h::MQTT_TOPIC).unwrap(), body["mqtt_topic"]);
        assert_eq!(
            kafka::header(m, h::RECEIVED_AT).unwrap(),
            body["received_at"].to_string()
        );
        assert_eq!(
            kafka::header(m, h::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        assert_eq!(kafka::header(m, h::SCHEMA_VERSION).unwrap(), "1");
        assert_eq!(
            kafka::header(m, h::TRACE),
            original.attributes.get("AWSTraceHeader").cloned()
        );
        let envelope: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(envelope["body"], body);
        assert_eq!(envelope["idempotencyKey"], expected_key.as_str());
    }
}

#[tokio::test]
async fn a_mixed_batch_dead_letters_the_unframeable_and_reports_no_failure() {
    let (bridge, topic, dlq) = bridge().await;
    let batch = records(MIXED);
    let report = bridge.process(&batch, in_30s()).await.unwrap();
    assert!(
        report.response().batch_item_failures.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        (
            report.count(Kind::Delivered),
            report.count(Kind::DeadLettered)
        ),
        (8, 2)
    );

    let dead = kafka::read_n(&dlq, 2).await;
    for m in &dead {
        let id = kafka::header(m, h::SQS_MESSAGE_ID).unwrap();
        let original = batch
            .iter()
            .find(|r| r.message_id.as_deref() == Some(id.as_str()))
            .unwrap();
        assert_eq!(
            m.payload().unwrap(),
            original.body.as_deref().unwrap().as_bytes(),
            "the original body, untouched"
        );
        assert_eq!(kafka::header(m, h::SQS_RECEIVE_COUNT).unwrap(), "1");
        assert_eq!(kafka::header(m, h::DLQ_STAGE).unwrap(), "sqs-to-kafka");
        let reason = kafka::header(m, h::DLQ_REASON).unwrap();
        assert!(
            reason.contains("not JSON") || reason.contains("/deviceId: is required"),
            "{reason}"
        );
    }
    kafka::read_n(&topic, 8).await;
    assert_eq!(
        (kafka::record_count(&topic), kafka::record_count(&dlq)),
        (8, 2)
    );
}

#[tokio::test]
async fn the_same_device_message_under_two_sqs_ids_becomes_two_records_with_one_key() {
    let (bridge, topic, _) = bridge().await;
    let report = bridge.process(&records(DUPLICATE), in_30s()).await.unwrap();
    assert_eq!(report.count(Kind::Delivered), 2);
    let got = kafka::read_n(&topic, 2).await;
    let keys: Vec<_> = got
        .iter()
        .map(|m| kafka::header(m, h::IDEMPOTENCY_KEY).unwrap())
        .collect();
    let ids: Vec<_> = got
        .iter()
        .map(|m| kafka::header(m, h::SQS_MESSAGE_ID).unwrap())
        .collect();
    assert_eq!(keys[0], keys[1]);
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn a_devices_records_reach_kafka_in_sqs_order() {
    let (bridge, _topic, _) = bridge().await;
    let batch = records(BATCH_100);
    let report = bridge.process(&batch, in_30s()).await.unwrap();
    assert_eq!(report.count(Kind::Delivered), 100);
    let mut last: HashMap<String, (i32, i64)> = HashMap::new();
    let mut repeated = 0;
    for (msg, r) in batch.iter().zip(&report.records) {
        let Outcome::Delivered { partition, offset } = r.outcome else {
            panic!("{r:?}")
        };
        let device = body_json(msg)["deviceId"].as_str().unwrap().to_owned();
        if let Some((p, o)) = last.insert(device.clone(), (partition, offset)) {
            repeated += 1;
            assert_eq!(p, partition, "{device} changed partition");
            assert!(offset > o, "{device}: offset {offset} after {o}");
        }
    }
    assert!(repeated > 50, "the batch repeats devices ({repeated})");
}

#[tokio::test]
async fn an_unreachable_broker_fails_every_record_before_the_deadline() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let cfg = config(
        LambdaArgs::local(&addr)
            .topic("t")
            .dlq_topic("d")
            .set("--message-timeout-ms", 1500)
            .set("--deadline-margin-ms", 0),
    );
    let bridge = Bridge::connect(cfg).await.unwrap();
    let batch = records(VALID_10);
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = bridge.process(&batch, deadline).await.unwrap();
    assert!(Instant::now() < deadline, "returned after the deadline");
    let failed: Vec<_> = report
        .response()
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    let ids: Vec<_> = batch
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();
    assert_eq!(failed, ids);
}

#[tokio::test]
async fn records_unconfirmed_at_the_deadline_are_failed() {
    // A "broker" that accepts connections and never answers: nothing can be acknowledged.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let cfg = config(
        LambdaArgs::local(&addr)
            .topic("t")
            .dlq_topic("d")
            .set("--message-timeout-ms", 60_000)
            .set("--deadline-margin-ms", 200),
    );
    let bridge = Bridge::connect(cfg).await.unwrap();
    let batch = records(VALID_10);
    let started = Instant::now();
    let report = bridge
        .process(&batch, started + Duration::from_millis(1_500))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(report.response().batch_item_failures.len(), 10);
    for r in &report.records {
        let Outcome::Failed { error } = &r.outcome else {
            panic!("{r:?}")
        };
        assert!(error.contains("before the invocation deadline"), "{error}");
    }
}

#[tokio::test]
async fn a_record_without_message_id_fails_the_whole_batch() {
    let (bridge, _, _) = bridge().await;
    let mut batch = records(VALID_10);
    batch[3].message_id = None;
    let err = bridge.process(&batch, in_30s()).await.unwrap_err();
    assert!(err.to_string().contains("#3"), "{err}");
}
