//! `bridgectl dlq redrive --source kafka`: streams the dead-letter topic up to where it
//! ended when the run started (what the run itself causes to be dead-lettered again is
//! for the next run), sends each record the plan allows back where it entered, and
//! records it in the ledger once the target has acknowledged it. A crash between the
//! two can only send a record twice, which the writer stores once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_sqs::types::MessageAttributeValue;
use bridge_common::kafka::KafkaConnection;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::Serialize;
use telemetry::redrive::Origin;

use super::plan::{DeadLetter, Filter, Plan, Policy, Target, decide};
use crate::common::Endpoints;
use crate::common::{consumer_config, kafka};

/// Sends in flight at once: enough to hide the round trips, few enough for an emulator.
const WINDOW: usize = 64;
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// No record and no progress for this long while records are due: the broker is gone.
const READ_STALL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, clap::Args)]
pub struct RedriveArgs {
    /// Print what would be sent; send nothing and record nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only dead letters whose reason contains this text (case-insensitive). Kafka only.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only this kind: unparseable, invalid or refused. Kafka only.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this stage: sqs-to-kafka or kafka-to-mongo. Kafka only.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only this device. Kafka only.
    #[arg(long)]
    pub device: Option<String>,
    /// Only dead letters written since: a duration ago ("2h") or an RFC 3339 time. Kafka only.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only the record at PARTITION:OFFSET of the dead-letter topic. Kafka only.
    #[arg(long, value_parser = parse_record)]
    pub record: Option<(i32, i64)>,
    /// Also redrive records that came back from an earlier redrive (after a fix). Kafka only.
    #[arg(long)]
    pub again: bool,
    /// The most times one record is ever redriven. Kafka only.
    #[arg(long, default_value_t = 3)]
    pub max_redrives: u32,
    /// Keep this header too (repeatable). By default a redriven record carries its key,
    /// its value and only the headers the bridge writes. Kafka only.
    #[arg(long = "keep-header")]
    pub keep_headers: Vec<String>,
    /// The ledger of redriven records (default: the dead-letter topic + ".redriven";
    /// make it compacted on a managed cluster). Kafka only.
    #[arg(long, env = "KAFKA_REDRIVE_LEDGER_TOPIC")]
    pub ledger_topic: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_record(s: &str) -> Result<(i32, i64), String> {
    let (p, o) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}`: expected PARTITION:OFFSET"))?;
    let p = p.parse().map_err(|e| format!("partition `{p}`: {e}"))?;
    let o = o.parse().map_err(|e| format!("offset `{o}`: {e}"))?;
    Ok((p, o))
}

fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is neither a duration (2h) nor an RFC 3339 time: {e}"))?;
    Ok(Utc::now() - chrono::Duration::from_std(ago).map_err(|e| e.to_string())?)
}

#[derive(Debug, Default, Serialize)]
pub struct RedriveReport {
    pub dry_run: bool,
    pub to_topic: u64,
    pub to_sqs: u64,
    /// Why the rest were not sent, with counts.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Sends that failed (they stay in the dead-letter topic for the next run).
    pub failed: u64,
    /// Sent, but the ledger entry failed: the next run sends them again (stored once).
    pub unrecorded: u64,
    /// With --dry-run --json: what would be sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_send: Vec<String>,
}

impl RedriveReport {
    pub fn redriven(&self) -> u64 {
        self.to_topic + self.to_sqs
    }
}

pub async fn redrive_kafka(at: &Endpoints, args: &RedriveArgs) -> anyhow::Result<RedriveReport> {
    let conn = kafka(&at.kafka).await?;
    let dlq = at.topics.dlq_topic.clone();
    let ledger_topic = args
        .ledger_topic
        .clone()
        .unwrap_or_else(|| format!("{dlq}.redriven"));
    let ledger = read_ledger(&conn, &ledger_topic, &dlq).await?;
    let policy = Policy {
        dlq_topic: dlq.clone(),
        filter: Filter {
            reason: args.reason.clone(),
            kind: args.kind.clone(),
            stage: args.stage.clone(),
            device: args.device.clone(),
            since_ms: args.since.map(|t| t.timestamp_millis()),
            record: args.record,
        },
        again: args.again,
        max_redrives: args.max_redrives,
        extra_headers: args.keep_headers.clone(),
    };
    let producer: FutureProducer = conn
        .producer_config(SEND_TIMEOUT.as_millis() as u64, 5)
        .create()?;
    let sqs_client = crate::sqs::client().await;
    let mut report = RedriveReport {
        dry_run: args.dry_run,
        ..RedriveReport::default()
    };
    let mut reader = TopicReader::open(&conn, &dlq).await?;
    let mut sending = FuturesUnordered::new();
    while let Some(m) = reader.next().await? {
        let record = dead_letter(&m);
        let plan = match decide(&policy, &ledger, &record) {
            Ok(plan) => plan,
            Err(skip) => {
                *report.skipped.entry(skip.as_str()).or_default() += 1;
                continue;
            }
        };
        if args.dry_run {
            let line = describe(&m, &plan);
            if args.json {
                report.would_send.push(line);
            } else {
                println!("would send {line}");
            }
            count(&mut report, plan.target);
            continue;
        }
        let send = Send {
            plan,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().unwrap_or_default().to_vec(),
            at: Origin {
                topic: dlq.clone(),
                partition: m.partition(),
                offset: m.offset(),
            },
        };
        sending.push(send.run(&producer, &sqs_client, at, &ledger_topic));
        if sending.len() >= WINDOW {
            settle(&mut report, sending.next().await);
        }
    }
    while let Some(done) = sending.next().await {
        settle(&mut report, Some(done));
    }
    Ok(report)
}

fn count(report: &mut RedriveReport, target: Target) {
    match target {
        Target::Topic => report.to_topic += 1,
        Target::Sqs => report.to_sqs += 1,
    }
}

fn settle(report: &mut RedriveReport, done: Option<Result<(Target, bool), anyhow::Error>>) {
    match done {
        Some(Ok((target, recorded))) => {
            count(report, target);
            if !recorded {
                report.unrecorded += 1;
            }
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "redrive failed; the record stays in the dead-letter topic");
            report.failed += 1;
        }
        None => {}
    }
}

fn describe(m: &BorrowedMessage<'_>, plan: &Plan) -> String {
    let to = match plan.target {
        Target::Topic => "telemetry topic",
        Target::Sqs => "SQS queue",
    };
    format!(
        "{}:{} to the {to} (redrive {} of chain {})",
        m.partition(),
        m.offset(),
        plan.mark.count,
        plan.mark.origin
    )
}

/// A record of the dead-letter topic as the plan reads it.
pub fn dead_letter<M: rdkafka::Message>(m: &M) -> DeadLetter<'_> {
    DeadLetter {
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key(),
        value: m.payload(),
        headers: m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key, h.value.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// One record on its way back, and its ledger entry after.
struct Send {
    plan: Plan,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    at: Origin,
}

impl Send {
    /// Ok((target, recorded in the ledger)).
    async fn run(
        self,
        producer: &FutureProducer,
        sqs: &aws_sdk_sqs::Client,
        at: &Endpoints,
        ledger_topic: &str,
    ) -> anyhow::Result<(Target, bool)> {
        let to = match self.plan.target {
            Target::Topic => {
                let mut headers = OwnedHeaders::new_with_capacity(self.plan.headers.len());
                for (name, value) in &self.plan.headers {
                    headers = headers.insert(Header {
                        key: name,
                        value: Some(value),
                    });
                }
                let mut record = FutureRecord::to(&at.topics.topic)
                    .payload(&self.value)
                    .headers(headers);
                if let Some(key) = &self.key {
                    record = record.key(key);
                }
                producer
                    .send(record, SEND_TIMEOUT)
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("produce to {}: {e}", at.topics.topic))?;
                at.topics.topic.clone()
            }
            Target::Sqs => {
                let body = String::from_utf8(self.value.clone()).context("an SQS body is text")?;
                let mut send = sqs
                    .send_message()
                    .queue_url(&at.sqs.queue_url)
                    .message_body(body);
                for (name, value) in self.plan.mark.headers() {
                    send = send.message_attributes(
                        name,
                        MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value(value)
                            .build()?,
                    );
                }
                tokio::time::timeout(SEND_TIMEOUT, send.send())
                    .await
                    .context("SQS SendMessage timed out")?
                    .map_err(crate::sqs::aws_err("SQS SendMessage"))?;
                format!("sqs:{}", at.sqs.queue_url)
            }
        };
        let entry = serde_json::json!({
            "to": to,
            "chain": self.plan.mark.origin.to_string(),
            "count": self.plan.mark.count,
            "at": Utc::now().to_rfc3339(),
        })
        .to_string();
        let key = self.at.to_string();
        let recorded = producer
            .send(
                FutureRecord::to(ledger_topic).key(&key).payload(&entry),
                SEND_TIMEOUT,
            )
            .await;
        if let Err((e, _)) = &recorded {
            tracing::warn!(record = %key, error = %e, "sent back, but not recorded in the ledger: the next run sends it again");
        }
        Ok((self.plan.target, recorded.is_ok()))
    }
}

/// The dead-letter records already redriven: the ledger's keys for this topic.
async fn read_ledger(
    conn: &KafkaConnection,
    ledger_topic: &str,
    dlq_topic: &str,
) -> anyhow::Result<HashSet<(i32, i64)>> {
    let mut done = HashSet::new();
    let mut reader = TopicReader::open(conn, ledger_topic).await?;
    while let Some(m) = reader.next().await? {
        let origin = m
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.parse::<Origin>().ok());
        if let Some(o) = origin.filter(|o| o.topic == dlq_topic) {
            done.insert((o.partition, o.offset));
        }
    }
    Ok(done)
}

/// Reads a topic from its start to where each partition ended when opened.
/// A topic that does not exist yet reads as empty.
struct TopicReader {
    consumer: StreamConsumer,
    topic: String,
    /// Partition -> the offset it ended at; removed once read up to it.
    ends: HashMap<i32, i64>,
}

impl TopicReader {
    async fn open(conn: &KafkaConnection, topic: &str) -> anyhow::Result<Self> {
        let mut cfg = consumer_config(conn);
        cfg.set("group.id", "bridgectl-dlq-redrive");
        let probe: BaseConsumer = cfg.create()?;
        let name = topic.to_owned();
        let ranges =
            tokio::task::spawn_blocking(move || super::watermarks(&probe, &name)).await??;
        let consumer: StreamConsumer = cfg.create()?;
        let mut tpl = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for (p, lo, hi) in ranges.into_iter().filter(|(_, lo, hi)| hi > lo) {
            tpl.add_partition_offset(topic, p, Offset::Offset(lo))?;
            ends.insert(p, hi);
        }
        consumer.assign(&tpl)?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            ends,
        })
    }

    async fn next(&mut self) -> anyhow::Result<Option<BorrowedMessage<'_>>> {
        // Split borrows: the message borrows the consumer while `ends` changes.
        let (consumer, topic, ends) = (&self.consumer, &self.topic, &mut self.ends);
        let mut last_progress = tokio::time::Instant::now();
        while !ends.is_empty() {
            match tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
                Ok(Ok(m)) => {
                    let Some(&end) = ends.get(&m.partition()) else {
                        continue; // a partition already read to its end
                    };
                    if m.offset() + 1 >= end {
                        ends.remove(&m.partition());
                    }
                    if m.offset() < end {
                        return Ok(Some(m));
                    }
                }
                Ok(Err(e)) => return Err(e).context(format!("reading {topic}")),
                Err(_elapsed) => {
                    // Offsets may end in a gap (compaction, transaction markers): a
                    // partition whose position reached its end is done.
                    let position = consumer.position()?;
                    let before = ends.len();
                    ends.retain(|p, end| {
                        let at =
                            position
                                .find_partition(topic, *p)
                                .and_then(|e| match e.offset() {
                                    Offset::Offset(o) => Some(o),
                                    _ => None,
                                });
                        at.is_none_or(|o| o < *end)
                    });
                    if ends.len() < before {
                        last_progress = tokio::time::Instant::now();
                    }
                    anyhow::ensure!(
                        last_progress.elapsed() < READ_STALL,
                        "no record from {topic} for {} s while {} partitions had records due",
                        READ_STALL.as_secs(),
                        ends.len()
                    );
                }
            }
        }
        Ok(None)
    }
}
