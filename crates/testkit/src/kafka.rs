//! Kafka clients for tests, pointed at the stack's broker.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;

use crate::StackEnv;

pub fn config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", StackEnv::get().kafka_bootstrap());
    c
}

/// Creates a fresh topic on the stack's broker and returns once the broker reports all its partitions.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_on(StackEnv::get().kafka_bootstrap(), name, partitions).await;
}

/// Creates a fresh topic on the broker at `bootstrap`.
pub async fn create_topic_on(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create topic {name} on {}: {e}",
                StackEnv::get().kafka_bootstrap()
            )
        });
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
    crate::wait_for(
        &format!("topic {name} metadata"),
        Duration::from_secs(10),
        || async {
            let md = admin
                .inner()
                .fetch_metadata(Some(name), Duration::from_secs(2))
                .ok()?;
            (md.topics().first()?.partitions().len() == partitions as usize).then_some(())
        },
    )
    .await;
}

/// Idempotent, acks=all, Java-compatible partitioning: the settings the bridge itself uses.
pub fn producer() -> FutureProducer {
    config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "15000")
        .create()
        .expect("producer")
}

/// A consumer in `group` with manual commits, reading from the earliest offset.
pub fn consumer(group: &str, topic: &str) -> StreamConsumer {
    let c: StreamConsumer = config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// Reads exactly `n` records of `topic` from the beginning (a fresh group), failing after 30 s of silence.
pub async fn read_n(topic: &str, n: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer = consumer(&crate::unique("reader"), topic);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {n} records arrived on {topic} within 30 s",
                    out.len()
                )
            })
            .expect("consume");
        out.push(m.detach());
    }
    out
}

/// Every record of `topic` on `bootstrap`, up to the high watermarks at the call.
pub async fn read_all_on(bootstrap: &str, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::Message as _;
    let consumer: StreamConsumer = config()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique("reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut left: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    for p in md.topics()[0].partitions() {
        let (_, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        if high > 0 {
            left.insert(p.id(), high);
        }
    }
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    while !left.is_empty() {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{topic}: records missing after 30 s ({left:?} left)"))
            .expect("consume");
        if left
            .get(&m.partition())
            .is_some_and(|high| m.offset() + 1 >= *high)
        {
            left.remove(&m.partition());
        }
        out.push(m.detach());
    }
    out
}

/// Records currently in `topic` (sum over partitions of high - low watermark).
pub fn record_count(topic: &str) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer = config().create().expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            hi - lo
        })
        .sum()
}

/// A header's value as UTF-8.
pub fn header(m: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::Message as _;
    use rdkafka::message::Headers as _;
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Sends device payloads through the Lambda's mapping (IoT rule body -> framed
/// Kafka record with envelope, key and headers) to `topic` on `bootstrap`, acked.
pub async fn produce_telemetry(
    bootstrap: &str,
    topic: &str,
    payloads: &[serde_json::Map<String, serde_json::Value>],
) {
    produce_telemetry_to(bootstrap, topic, None, payloads).await;
}

/// As [`produce_telemetry`], all to one `partition` when given (else by key).
pub async fn produce_telemetry_to(
    bootstrap: &str,
    topic: &str,
    partition: Option<i32>,
    payloads: &[serde_json::Map<String, serde_json::Value>],
) {
    let mut c = config();
    c.set("bootstrap.servers", bootstrap);
    produce_telemetry_via(c, topic, partition, payloads).await;
}

/// As [`produce_telemetry_to`], through a client built from `client` (a TLS broker, say).
pub async fn produce_telemetry_via(
    mut client: ClientConfig,
    topic: &str,
    partition: Option<i32>,
    payloads: &[serde_json::Map<String, serde_json::Value>],
) {
    let producer: FutureProducer = client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let mut pending = Vec::with_capacity(payloads.len());
    for (i, p) in payloads.iter().enumerate() {
        let body = serde_json::Value::Object(telemetry::sample::rule_body(
            p,
            1_767_225_600_000 + i as i64,
        ))
        .to_string();
        let mut msg = aws_lambda_events::sqs::SqsMessage::default();
        msg.message_id = Some(format!("test-{i}"));
        let record = telemetry::frame(&body)
            .expect("payloads must frame")
            .into_kafka_record(&msg);
        pending.push(enqueue(&producer, topic, partition, &record).await);
    }
    for delivery in pending {
        delivery
            .await
            .expect("delivery channel")
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
    }
}

/// Sends raw values (for bodies that would not frame, or invalid ones) with a key.
pub async fn produce_raw(bootstrap: &str, topic: &str, records: &[(String, Vec<u8>)]) {
    produce_raw_to(bootstrap, topic, None, records).await;
}

/// As [`produce_raw`], all to one `partition` when given (else by key).
pub async fn produce_raw_to(
    bootstrap: &str,
    topic: &str,
    partition: Option<i32>,
    records: &[(String, Vec<u8>)],
) {
    let producer: FutureProducer = config()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .create()
        .expect("producer");
    for (key, value) in records {
        let mut rec = rdkafka::producer::FutureRecord::to(topic)
            .key(key)
            .payload(value);
        if let Some(p) = partition {
            rec = rec.partition(p);
        }
        producer
            .send(rec, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
}

/// Hands a record to librdkafka now (waiting while its queue is full); the future resolves on the ack.
async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    record: &telemetry::KafkaRecord,
) -> rdkafka::producer::DeliveryFuture {
    use rdkafka::message::{Header, OwnedHeaders};
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (name, value) in &record.headers {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    let mut rec = rdkafka::producer::FutureRecord::to(topic)
        .key(&record.key)
        .payload(&record.value)
        .headers(headers);
    if let Some(p) = partition {
        rec = rec.partition(p);
    }
    loop {
        match producer.send_result(rec) {
            Ok(delivery) => return delivery,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) => {
                rec = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => panic!("enqueue to {topic}: {e}"),
        }
    }
}

/// Sum over partitions of (committed offset of `group`), and of high watermarks, on `bootstrap`.
pub fn committed_and_high(bootstrap: &str, group: &str, topic: &str) -> (i64, i64) {
    let consumer: rdkafka::consumer::BaseConsumer = config()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut high = 0;
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
        high += consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks")
            .1;
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let sum = committed
        .elements()
        .iter()
        .filter_map(|e| e.offset().to_raw())
        .filter(|o| *o >= 0)
        .sum();
    (sum, high)
}
