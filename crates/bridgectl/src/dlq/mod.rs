//! `bridgectl dlq`: look into and redrive both dead-letter places.
//! - SQS DLQ: what the Lambda failed on maxReceiveCount times (transient failures that lasted).
//!   `redrive` moves the messages back to the source queue.
//! - Kafka dead-letter topic: what can never be stored as sent (reasons in headers).
//!   `redrive` re-submits each record where it entered (the SQS queue for Lambda refusals,
//!   the telemetry topic for the writer's), for after a fix. It is safe to run twice: a
//!   ledger topic lists what was sent, and a record that fails again comes back marked
//!   (`plan.rs`); replays are harmless anyway, since the idempotency key dedupes.

pub mod plan;
pub mod redrive;
mod sqs;

pub use redrive::{RedriveArgs, redrive_kafka};
pub use sqs::redrive_sqs;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers as _, OwnedMessage};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::{Value, json};
use telemetry::envelope::header;

use crate::common::{Endpoints, consumer_config, kafka};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The SQS dead-letter queue.
    Sqs,
    /// The Kafka dead-letter topic.
    Kafka,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: where, and why.
    List {
        #[arg(long, value_enum)]
        source: Source,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        at: Endpoints,
    },
    /// One dead letter in full: body and every header or attribute.
    Show {
        #[arg(long, value_enum)]
        source: Source,
        /// SQS message id, or Kafka `partition:offset`.
        id: String,
        #[command(flatten)]
        at: Endpoints,
    },
    /// Send dead letters back into the pipeline (safe to run twice).
    Redrive {
        #[arg(long, value_enum)]
        source: Source,
        #[command(flatten)]
        at: Endpoints,
        #[command(flatten)]
        redrive: RedriveArgs,
    },
}

pub async fn run(cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List {
            source: Source::Sqs,
            limit,
            at,
        } => {
            for m in peek_sqs(&at, limit).await? {
                println!(
                    "{}  receives={}  {}",
                    m["messageId"],
                    m["attributes"]["ApproximateReceiveCount"],
                    truncate(m["body"].as_str().unwrap_or_default())
                );
            }
        }
        DlqCommand::List {
            source: Source::Kafka,
            limit,
            at,
        } => {
            for m in read_kafka_dlq(&at).await?.iter().take(limit) {
                let h = |n| kafka_header(m, n).unwrap_or_default();
                println!(
                    "{}:{}  {:<15} {}",
                    m.partition(),
                    m.offset(),
                    h(header::DLQ_STAGE),
                    h(header::DLQ_REASON)
                );
            }
        }
        DlqCommand::Show {
            source: Source::Sqs,
            id,
            at,
        } => {
            let m = peek_sqs(&at, 1_000)
                .await?
                .into_iter()
                .find(|m| m["messageId"] == id.as_str());
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &m.with_context(|| format!("no message {id} in the SQS DLQ"))?
                )?
            );
        }
        DlqCommand::Show {
            source: Source::Kafka,
            id,
            at,
        } => {
            let (p, o) = id
                .split_once(':')
                .context("Kafka dead letters are named partition:offset")?;
            let (p, o): (i32, i64) = (p.parse()?, o.parse()?);
            let all = read_kafka_dlq(&at).await?;
            let m = all
                .iter()
                .find(|m| m.partition() == p && m.offset() == o)
                .with_context(|| format!("no record {id}"))?;
            println!("{}", serde_json::to_string_pretty(&kafka_json(m))?);
        }
        DlqCommand::Redrive {
            source: Source::Sqs,
            at,
            redrive,
        } => {
            anyhow::ensure!(
                !redrive.dry_run && !redrive.again && redrive.keep_headers.is_empty(),
                "--dry-run, --again and --keep-header apply to --source kafka only"
            );
            let r = redrive_sqs(&at).await?;
            println!(
                "moved {} messages from the SQS DLQ back to {}",
                r.moved, at.sqs.queue_url
            );
            anyhow::ensure!(
                r.not_sent == 0 && r.not_deleted == 0,
                "{} messages could not be sent back (they stay in the DLQ); {} were sent back but could not be deleted from the DLQ (a later redrive sends them again; the writer stores them once)",
                r.not_sent,
                r.not_deleted
            );
        }
        DlqCommand::Redrive {
            source: Source::Kafka,
            at,
            redrive,
        } => {
            let r = redrive_kafka(&at, &redrive).await?;
            if redrive.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                let verb = if r.dry_run {
                    "would redrive"
                } else {
                    "redrove"
                };
                println!(
                    "{verb} {} records: {} to SQS and {} to {}",
                    r.redriven(),
                    r.to_sqs,
                    r.to_topic,
                    at.topics.topic
                );
                for (why, n) in &r.skipped {
                    println!("skipped {n}: {why}");
                }
            }
            anyhow::ensure!(
                r.failed == 0 && r.unrecorded == 0,
                "{} records could not be sent back (run again to retry them); {} were sent but not recorded in the ledger (a later run sends them again; the writer stores them once)",
                r.failed,
                r.unrecorded
            );
        }
    }
    Ok(())
}

fn dlq_url(at: &Endpoints) -> anyhow::Result<&str> {
    at.sqs
        .dlq_url
        .as_deref()
        .context("set --dlq-url or SQS_DLQ_URL")
}

/// Reads messages without consuming them: they are made visible again at once.
pub async fn peek_sqs(at: &Endpoints, limit: usize) -> anyhow::Result<Vec<Value>> {
    let client = crate::sqs::client().await;
    let url = dlq_url(at)?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while out.len() < limit {
        let got = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(crate::sqs::aws_err("SQS"))?;
        let fresh: Vec<_> = got
            .messages()
            .iter()
            .filter(|m| seen.insert(m.message_id().unwrap_or_default().to_owned()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for m in fresh {
            let attrs: serde_json::Map<String, Value> = m
                .attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                .collect();
            out.push(json!({"messageId": m.message_id(), "body": m.body(), "attributes": attrs}));
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// Every record of the dead-letter topic, read without a consumer group.
pub async fn read_kafka_dlq(at: &Endpoints) -> anyhow::Result<Vec<OwnedMessage>> {
    read_kafka_dlq_from(at, &HashMap::new()).await
}

/// The next offset of each partition of the dead-letter topic (to read only what comes after).
pub async fn kafka_dlq_ends(at: &Endpoints) -> anyhow::Result<HashMap<i32, i64>> {
    Ok(kafka_dlq_marks(at)
        .await?
        .into_iter()
        .map(|(p, (_, hi))| (p, hi))
        .collect())
}

/// partition -> (low, high) watermarks of the dead-letter topic.
pub async fn kafka_dlq_marks(at: &Endpoints) -> anyhow::Result<HashMap<i32, (i64, i64)>> {
    let (consumer, topic) = dlq_consumer(at).await?;
    tokio::task::spawn_blocking(move || {
        Ok(watermarks(&consumer, &topic)?
            .into_iter()
            .map(|(p, lo, hi)| (p, (lo, hi)))
            .collect())
    })
    .await?
}

/// The records of the dead-letter topic from `from` (partition -> offset; the start when absent).
pub async fn read_kafka_dlq_from(
    at: &Endpoints,
    from: &HashMap<i32, i64>,
) -> anyhow::Result<Vec<OwnedMessage>> {
    let (consumer, topic) = dlq_consumer(at).await?;
    let from = from.clone();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        let mut remaining = 0;
        for (p, lo, hi) in watermarks(&consumer, &topic)? {
            let start = from.get(&p).copied().unwrap_or(lo).max(lo);
            tpl.add_partition_offset(&topic, p, Offset::Offset(start))?;
            remaining += hi - start;
        }
        consumer.assign(&tpl)?;
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while (out.len() as i64) < remaining && std::time::Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(500)) {
                out.push(m?.detach());
            }
        }
        anyhow::ensure!(
            out.len() as i64 >= remaining,
            "read {} of {remaining} dead letters within 60 s",
            out.len()
        );
        Ok(out)
    })
    .await?
}

async fn dlq_consumer(at: &Endpoints) -> anyhow::Result<(BaseConsumer, String)> {
    let conn = kafka(&at.kafka).await?;
    let mut cfg = consumer_config(&conn);
    cfg.set("group.id", "bridgectl-dlq-reader");
    Ok((cfg.create()?, at.topics.dlq_topic.clone()))
}

/// (partition, low, high) for every partition of `topic`.
fn watermarks(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions = md
        .topics()
        .first()
        .map(|t| t.partitions())
        .unwrap_or_default();
    partitions
        .iter()
        .map(|p| {
            let (lo, hi) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            Ok((p.id(), lo, hi))
        })
        .collect()
}

/// A dead letter's reason for people: "stage: rule at path" from its first violation,
/// else "stage: kind" (an unparseable or refused record names no rule).
pub fn reason(m: &OwnedMessage) -> String {
    let h = |name: &str| kafka_header(m, name);
    let stage = h(header::DLQ_STAGE).unwrap_or_default();
    let rules: Vec<Value> = h(header::DLQ_VIOLATIONS)
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default();
    let rule = match rules.first() {
        Some(r) => format!(
            "{} at {}",
            r["rule"].as_str().unwrap_or_default(),
            r["path"].as_str().unwrap_or_default()
        ),
        None => h(header::DLQ_KIND).unwrap_or_default(),
    };
    format!("{stage}: {rule}")
}

pub fn kafka_header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn kafka_json(m: &OwnedMessage) -> Value {
    let headers: serde_json::Map<String, Value> = m
        .headers()
        .into_iter()
        .flat_map(|h| h.iter())
        .map(|h| {
            (
                h.key.to_owned(),
                json!(h.value.map(|v| String::from_utf8_lossy(v).into_owned())),
            )
        })
        .collect();
    json!({
        "partition": m.partition(),
        "offset": m.offset(),
        "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": headers,
        "value": String::from_utf8_lossy(m.payload().unwrap_or_default()),
    })
}

fn truncate(s: &str) -> String {
    let mut out: String = s.chars().take(100).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}
