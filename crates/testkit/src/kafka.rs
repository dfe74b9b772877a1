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
