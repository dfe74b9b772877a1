//! Every SQS call bridgectl makes beyond send and receive: the client, queue
//! attributes, batch deletes with partial failures, and the Lambda event record.
//! `esm`, `dlq`, `status` and the bench crate use these; none keeps its own copy.

use std::time::Duration;

use aws_lambda_events::sqs::{SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use serde::Serialize;

/// SQS client from the standard AWS environment (`AWS_ENDPOINT_URL`, or
/// `AWS_ENDPOINT_URL_SQS` for SQS alone, points it at the local emulator).
/// No request waits forever on an overloaded endpoint: an attempt may take the
/// longest long poll (20 s) plus a margin, and is then retried by the SDK.
pub async fn client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&aws_config(Duration::from_secs(30)).await)
}

/// The AWS SDK settings from the standard environment, with a deadline on every attempt.
pub async fn aws_config(attempt: Duration) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(attempt)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

/// An AWS SDK error with its whole cause chain (the SDK's Display alone says little).
pub fn aws_err<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
) -> impl FnOnce(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{what}: {}", aws_sdk_sqs::error::DisplayErrorContext(e))
}

pub async fn queue_arn(client: &aws_sdk_sqs::Client, queue: &str) -> anyhow::Result<String> {
    let attrs = client
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws_err(&format!("queue {queue}")))?;
    Ok(attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default())
}

/// A queue's messages as SQS approximates them. Read from attributes only: receiving
/// to look would raise the messages' receive counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Depth {
    pub visible: i64,
    pub in_flight: i64,
    pub delayed: i64,
}

impl Depth {
    pub fn is_empty(&self) -> bool {
        self.visible == 0 && self.in_flight == 0 && self.delayed == 0
    }
}

pub async fn depth(client: &aws_sdk_sqs::Client, queue: &str) -> anyhow::Result<Depth> {
    let out = client
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(aws_err(&format!("queue {queue}")))?;
    let get = |name: QueueAttributeName| -> i64 {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Depth {
        visible: get(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    })
}

/// What a batch delete left behind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    pub deleted: usize,
    /// Still in the queue: delivered again once their visibility runs out.
    pub failed: usize,
}

/// Deletes `(id, receipt handle)` pairs, 10 per request, retrying the entries SQS
/// reports as failed up to `attempts` times in all. A sender fault (a bad or stale
/// receipt handle) does not heal, so it is not retried.
pub async fn delete(
    client: &aws_sdk_sqs::Client,
    queue: &str,
    handles: &[(String, String)],
    attempts: u32,
) -> anyhow::Result<Deleted> {
    let mut out = Deleted::default();
    for chunk in handles.chunks(10) {
        let mut pending: Vec<&(String, String)> = chunk.iter().collect();
        for attempt in 1..=attempts.max(1) {
            let entries = pending
                .iter()
                .enumerate()
                .map(|(i, (_, handle))| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let res = client
                .delete_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(aws_err("SQS DeleteMessageBatch"))?;
            out.deleted += res.successful().len();
            let mut retry = Vec::new();
            for f in res.failed() {
                let Some(entry) = f.id().parse::<usize>().ok().and_then(|i| pending.get(i)) else {
                    continue;
                };
                tracing::warn!(
                    message_id = entry.0.as_str(),
                    code = f.code(),
                    attempt,
                    "SQS delete failed; the message will be delivered again unless a retry deletes it"
                );
                if f.sender_fault() {
                    out.failed += 1;
                } else {
                    retry.push(*entry);
                }
            }
            pending = retry;
            if pending.is_empty() {
                break;
            }
            if attempt < attempts {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
        out.failed += pending.len();
    }
    Ok(out)
}

/// An SQS API message in the shape the Lambda event carries it.
pub fn to_event_record(m: &aws_sdk_sqs::types::Message, arn: &str, region: &str) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = m.message_id().map(str::to_owned);
    r.receipt_handle = m.receipt_handle().map(str::to_owned);
    r.body = m.body().map(str::to_owned);
    r.md5_of_body = m.md5_of_body().map(str::to_owned);
    r.attributes = m
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    r.message_attributes = m
        .message_attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| {
                    let mut attr = SqsMessageAttribute::default();
                    attr.string_value = v.string_value().map(str::to_owned);
                    attr.data_type = Some(v.data_type().to_owned());
                    (k.clone(), attr)
                })
                .collect()
        })
        .unwrap_or_default();
    r.md5_of_message_attributes = m.md5_of_message_attributes().map(str::to_owned);
    r.event_source = Some("aws:sqs".into());
    r.event_source_arn = Some(arn.to_owned());
    r.aws_region = Some(region.to_owned());
    r
}
