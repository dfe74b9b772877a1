//! `bridgectl status`: the whole pipeline on one screen (or as JSON with `--json`).

use std::time::Duration;

use bson::{Document, doc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::common::{Endpoints, StoreArgs, TopicArgs, consumer_config, kafka, mongo};
use crate::sqs::{self, depth};

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub at: Endpoints,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub sqs: SqsStatus,
    pub kafka: KafkaStatus,
    pub mongodb: MongoStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct SqsStatus {
    pub visible: i64,
    pub in_flight: i64,
    pub delayed: i64,
    pub dlq_depth: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub partition: i32,
    pub low_watermark: i64,
    pub high_watermark: i64,
    /// The group's committed offset; None before its first commit.
    pub committed: Option<i64>,
    pub lag: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KafkaStatus {
    pub topic: String,
    pub group: String,
    pub partitions: Vec<PartitionStatus>,
    pub total_lag: i64,
    pub dlq_topic: String,
    pub dlq_records: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MongoStatus {
    /// `regular`, `timeseries` or `missing` (listCollections).
    pub collection_type: String,
    pub telemetry_documents: u64,
    pub devices: u64,
    pub newest_ts: Option<String>,
}

pub async fn collect(args: &StatusArgs) -> anyhow::Result<Status> {
    let client = sqs::client().await;
    let queue = depth(&client, &args.at.sqs.queue_url).await?;
    let dlq_depth = match &args.at.sqs.dlq_url {
        Some(url) => Some(depth(&client, url).await?.visible),
        None => None,
    };
    let conn = kafka(&args.at.kafka).await?;
    let mut cfg = consumer_config(&conn);
    cfg.set("group.id", &args.at.topics.group_id);
    let topics = args.at.topics.clone();
    let kafka = tokio::task::spawn_blocking(move || kafka_status(cfg, &topics)).await??;
    let db = mongo(&args.at.mongo, &args.at.kafka.local()).await?;
    let mongodb = mongo_status(&db, &args.at.store).await?;
    Ok(Status {
        sqs: SqsStatus {
            visible: queue.visible,
            in_flight: queue.in_flight,
            delayed: queue.delayed,
            dlq_depth,
        },
        kafka,
        mongodb,
    })
}

/// "regular", "timeseries" or "missing".
pub async fn collection_type(db: &mongodb::Database, name: &str) -> anyhow::Result<&'static str> {
    let listed = db
        .run_command(doc! {"listCollections": 1, "filter": {"name": name}, "nameOnly": false})
        .await?;
    Ok(listed
        .get_document("cursor")
        .ok()
        .and_then(|c| c.get_array("firstBatch").ok())
        .and_then(|b| b.first())
        .and_then(|e| e.as_document())
        .map_or("missing", |e| match e.get_str("type") {
            Ok("timeseries") => "timeseries",
            _ => "regular",
        }))
}

/// The telemetry collection's type and size, and the devices' count.
pub async fn mongo_status(
    db: &mongodb::Database,
    store: &StoreArgs,
) -> anyhow::Result<MongoStatus> {
    let collection = &store.collection;
    let telemetry = db.collection::<Document>(collection);
    let collection_type = collection_type(db, collection).await?.to_owned();
    let newest = telemetry
        .find_one(doc! {})
        .sort(doc! {"ts": -1})
        .projection(doc! {"ts": 1})
        .await?;
    let mongodb = MongoStatus {
        collection_type,
        telemetry_documents: telemetry.count_documents(doc! {}).await?,
        devices: db
            .collection::<Document>(&store.devices_collection)
            .count_documents(doc! {})
            .await?,
        newest_ts: newest.and_then(|d| {
            d.get_datetime("ts")
                .ok()
                .map(|t| t.try_to_rfc3339_string().unwrap_or_default())
        }),
    };
    Ok(mongodb)
}

fn kafka_status(cfg: rdkafka::ClientConfig, topics: &TopicArgs) -> anyhow::Result<KafkaStatus> {
    let consumer: BaseConsumer = cfg.create()?;
    let timeout = Duration::from_secs(10);
    let (partitions, total_lag) = partitions(&consumer, &topics.topic, timeout)?;
    let dlq = partitions_raw(&consumer, &topics.dlq_topic, timeout)?;
    Ok(KafkaStatus {
        topic: topics.topic.clone(),
        group: topics.group_id.clone(),
        partitions,
        total_lag,
        dlq_topic: topics.dlq_topic.clone(),
        dlq_records: dlq.iter().map(|(_, lo, hi)| hi - lo).sum(),
    })
}

/// (partition, low, high) for every partition of `topic`.
fn partitions_raw(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let t = md
        .topics()
        .first()
        .ok_or_else(|| anyhow::anyhow!("topic {topic} not found"))?;
    if let Some(err) = t.error() {
        anyhow::bail!("topic {topic}: {err:?}");
    }
    let mut out = Vec::new();
    for p in t.partitions() {
        let (lo, hi) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        out.push((p.id(), lo, hi));
    }
    out.sort();
    Ok(out)
}

/// The partitions of `topic` with the committed offsets of the consumer's group and the lag
/// (the whole backlog where the group has not committed).
pub fn partitions(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<(Vec<PartitionStatus>, i64)> {
    let raw = partitions_raw(consumer, topic, timeout)?;
    let mut tpl = TopicPartitionList::new();
    for (p, _, _) in &raw {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut out = Vec::new();
    for (p, lo, hi) in raw {
        let c = committed
            .find_partition(topic, p)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        out.push(PartitionStatus {
            partition: p,
            low_watermark: lo,
            high_watermark: hi,
            committed: c,
            lag: hi - c.unwrap_or(lo),
        });
    }
    let total = out.iter().map(|p| p.lag).sum();
    Ok((out, total))
}

pub fn print(s: &Status) {
    println!(
        "SQS      visible {:>8}   in flight {:>8}   delayed {:>8}   DLQ {:>8}",
        s.sqs.visible,
        s.sqs.in_flight,
        s.sqs.delayed,
        s.sqs.dlq_depth.map_or("-".into(), |d| d.to_string())
    );
    println!(
        "Kafka    topic {} (group {}): lag {}",
        s.kafka.topic, s.kafka.group, s.kafka.total_lag
    );
    println!(
        "         {:>9} {:>14} {:>12} {:>8}",
        "partition", "high watermark", "committed", "lag"
    );
    for p in &s.kafka.partitions {
        let c = p.committed.map_or("-".into(), |c| c.to_string());
        println!(
            "         {:>9} {:>14} {:>12} {:>8}",
            p.partition, p.high_watermark, c, p.lag
        );
    }
    println!(
        "         dead-letter topic {}: {} records",
        s.kafka.dlq_topic, s.kafka.dlq_records
    );
    println!(
        "MongoDB  telemetry {:>8} documents ({})   devices {:>6}   newest ts {}",
        s.mongodb.telemetry_documents,
        s.mongodb.collection_type,
        s.mongodb.devices,
        s.mongodb.newest_ts.as_deref().unwrap_or("-")
    );
}
