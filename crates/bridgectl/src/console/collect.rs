//! Takes the snapshots: SQS attributes, Kafka watermarks, the writer group's offsets and
//! members, MongoDB counts, and the dead-letter topic read incrementally for its
//! reasons. Every call has a deadline; a stage that fails is reported, not fatal.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use super::snapshot::{DeadLetters, Group, Kafka, Mongo, Partition, Snapshot, Sqs};
use crate::common::{Endpoints, consumer_config, kafka};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);
const STAGE_DEADLINE: Duration = Duration::from_secs(15);

pub struct Collector {
    at: Endpoints,
    sqs: aws_sdk_sqs::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    /// Where the dead-letter reader goes on from (partition -> next offset).
    dlq_next: HashMap<i32, i64>,
    dlq_reasons: BTreeMap<String, u64>,
    dlq_newest_ms: Option<i64>,
}

impl Collector {
    pub async fn new(at: Endpoints) -> Self {
        Self {
            sqs: crate::sqs::client().await,
            cloudwatch: cloudwatch_client().await,
            at,
            dlq_next: HashMap::new(),
            dlq_reasons: BTreeMap::new(),
            dlq_newest_ms: None,
        }
    }

    pub async fn snapshot(&mut self) -> Snapshot {
        let at_ms = chrono::Utc::now().timestamp_millis();
        let (sqs, kafka, mongo) = tokio::join!(
            deadline(self.sqs_stage()),
            deadline(kafka_stage(&self.at)),
            deadline(mongo_stage(&self.at)),
        );
        let dead_letters = deadline(self.dead_letter_stage()).await;
        Snapshot {
            at_ms,
            sqs,
            kafka,
            mongo,
            dead_letters,
        }
    }

    async fn sqs_stage(&self) -> anyhow::Result<Sqs> {
        let queue = crate::sqs::depth(&self.sqs, &self.at.sqs.queue_url).await?;
        let dlq_visible = match &self.at.sqs.dlq_url {
            Some(url) => Some(crate::sqs::depth(&self.sqs, url).await?.visible),
            None => None,
        };
        let (oldest_age_s, oldest_age_note) =
            match oldest_age(&self.cloudwatch, &self.at.sqs.queue_url).await {
                Ok(age) => (age, None),
                Err(e) => (None, Some(e)),
            };
        Ok(Sqs {
            queue,
            oldest_age_s,
            oldest_age_note,
            dlq_visible,
        })
    }

    /// Reads what arrived since the last look; the reasons accumulate.
    async fn dead_letter_stage(&mut self) -> anyhow::Result<DeadLetters> {
        let marks = crate::dlq::kafka_dlq_marks(&self.at).await?;
        let records = marks.values().map(|(lo, hi)| hi - lo).sum();
        let ends: HashMap<i32, i64> = marks.iter().map(|(p, (_, hi))| (*p, *hi)).collect();
        let behind = ends
            .iter()
            .any(|(p, hi)| self.dlq_next.get(p).copied().unwrap_or(0) < *hi);
        if behind {
            for m in crate::dlq::read_kafka_dlq_from(&self.at, &self.dlq_next).await? {
                *self.dlq_reasons.entry(crate::dlq::reason(&m)).or_default() += 1;
                if let Some(t) = m.timestamp().to_millis() {
                    self.dlq_newest_ms = Some(self.dlq_newest_ms.map_or(t, |n| n.max(t)));
                }
                let next = self.dlq_next.entry(m.partition()).or_default();
                *next = (*next).max(m.offset() + 1);
            }
        }
        // A partition read to its end (or empty) goes on from there.
        for (p, hi) in &ends {
            let next = self.dlq_next.entry(*p).or_default();
            *next = (*next).max(*hi);
        }
        Ok(DeadLetters {
            topic: self.at.topics.dlq_topic.clone(),
            records,
            by_reason: self.dlq_reasons.clone(),
            newest_ms: self.dlq_newest_ms,
        })
    }
}

async fn cloudwatch_client() -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&crate::sqs::aws_config(Duration::from_secs(10)).await)
}

/// The newest `ApproximateAgeOfOldestMessage` (Maximum, 1-minute periods) of the last 10
/// minutes: what the `sqs-oldest-message-age` alarm reads. Err says why there is none
/// (an emulator without CloudWatch, missing permission), shown on the page.
async fn oldest_age(
    cw: &aws_sdk_cloudwatch::Client,
    queue_url: &str,
) -> Result<Option<f64>, String> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let name = queue_url.rsplit('/').next().unwrap_or_default();
    let now = std::time::SystemTime::now();
    let query = MetricDataQuery::builder()
        .id("age")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/SQS")
                        .metric_name("ApproximateAgeOfOldestMessage")
                        .dimensions(Dimension::builder().name("QueueName").value(name).build())
                        .build(),
                )
                .period(60)
                .stat("Maximum")
                .build(),
        )
        .build();
    let out = cw
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(DateTime::from(now - Duration::from_secs(600)))
        .end_time(DateTime::from(now))
        .send()
        .await
        .map_err(|e| {
            use aws_sdk_cloudwatch::error::ProvideErrorMetadata as _;
            match (e.code(), e.raw_response().map(|r| r.status().as_u16())) {
                (Some(code), _) => format!("CloudWatch refused the query ({code})"),
                (None, Some(status)) => {
                    format!("the endpoint answered HTTP {status} (no CloudWatch)")
                }
                (None, None) => format!("CloudWatch unreachable ({e})"),
            }
        })?;
    // Newest first is CloudWatch's default order (TimestampDescending).
    Ok(out
        .metric_data_results()
        .first()
        .and_then(|r| r.values().first().copied()))
}

async fn deadline<T>(f: impl Future<Output = anyhow::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(STAGE_DEADLINE, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("no answer within {} s", STAGE_DEADLINE.as_secs())),
    }
}

async fn mongo_stage(at: &Endpoints) -> anyhow::Result<Mongo> {
    let db = crate::common::mongo(&at.mongo, &at.kafka.local()).await?;
    let m = crate::status::mongo_status(&db, &at.store).await?;
    Ok(Mongo {
        collection_type: m.collection_type,
        documents: m.telemetry_documents,
        devices: m.devices,
    })
}

async fn kafka_stage(at: &Endpoints) -> anyhow::Result<Kafka> {
    let conn = kafka(&at.kafka).await?;
    // The writer's group id reads its committed offsets (OffsetFetch) without joining it.
    let mut offsets_cfg = consumer_config(&conn);
    offsets_cfg.set("group.id", &at.topics.group_id);
    let mut peek_cfg = consumer_config(&conn);
    peek_cfg.set("group.id", "bridgectl-console");
    let (topic, group) = (at.topics.topic.clone(), at.topics.group_id.clone());
    tokio::task::spawn_blocking(move || {
        let offsets: BaseConsumer = offsets_cfg.create()?;
        let mut partitions = partitions(&offsets, &topic)?;
        let peek: BaseConsumer = peek_cfg.create()?;
        next_record_times(&peek, &topic, &mut partitions)?;
        Ok(Kafka {
            topic,
            partitions,
            group: describe_group(&offsets, &group),
        })
    })
    .await?
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<Partition>> {
    let (parts, _) = crate::status::partitions(consumer, topic, KAFKA_TIMEOUT)?;
    Ok(parts
        .into_iter()
        .map(|p| Partition {
            partition: p.partition,
            low: p.low_watermark,
            high: p.high_watermark,
            committed: p.committed,
            next_record_ms: None,
        })
        .collect())
}

/// The timestamp of the record each lagging partition's group reads next: the age of
/// the lag in seconds. A partition whose record does not come within the deadline keeps
/// None (shown as unknown, never as 0).
fn next_record_times(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &mut [Partition],
) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    let mut wanted = 0;
    for p in partitions.iter() {
        let next = p.committed.unwrap_or(p.low).max(p.low);
        if next < p.high {
            tpl.add_partition_offset(topic, p.partition, Offset::Offset(next))?;
            wanted += 1;
        }
    }
    if wanted == 0 {
        return Ok(());
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut found = 0;
    while found < wanted && std::time::Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        if let Some(p) = partitions.iter_mut().find(|p| p.partition == m.partition())
            && p.next_record_ms.is_none()
        {
            p.next_record_ms = m.timestamp().to_millis();
            found += 1;
            // One record per partition is all this needs.
            let mut one = TopicPartitionList::new();
            one.add_partition(topic, m.partition());
            let _ = consumer.pause(&one);
        }
    }
    Ok(())
}

/// Members and state from DescribeGroups; the broker's error as text when it has none.
fn describe_group(consumer: &BaseConsumer, group: &str) -> Group {
    let (members, state) = match consumer.fetch_group_list(Some(group), KAFKA_TIMEOUT) {
        Ok(list) => match list.groups().iter().find(|g| g.name() == group) {
            Some(g) => (
                Ok(g.members()
                    .iter()
                    .map(|m| format!("{} ({})", m.client_id(), m.client_host()))
                    .collect()),
                Some(g.state().to_owned()),
            ),
            None => (Ok(Vec::new()), None),
        },
        Err(e) => (Err(e.to_string()), None),
    };
    Group {
        id: group.to_owned(),
        members,
        state,
    }
}
