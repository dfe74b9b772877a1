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

/// Creates a fresh topic and returns once the broker reports all its partitions.
pub async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config().create().expect("admin client");
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
