//! `bridgectl dlq redrive --source sqs`: moves the SQS DLQ's messages back to the source
//! queue, attributes and all. Send first, then delete: a crash in between can only
//! duplicate (stored once downstream), never lose. A delete SQS refuses is retried;
//! one that still fails is reported, since that message will be redriven again.

use anyhow::Context as _;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, SendMessageBatchRequestEntry};

use crate::common::Endpoints;
use crate::sqs::{self, aws_err};

/// Receipt handles stay valid while the messages are invisible to others.
const VISIBILITY_S: i32 = 120;
const DELETE_ATTEMPTS: u32 = 4;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SqsRedrive {
    /// Sent back and deleted from the DLQ.
    pub moved: usize,
    /// Not sent (still in the DLQ; visible again after the visibility timeout).
    pub not_sent: usize,
    /// Sent back, but SQS kept refusing to delete them from the DLQ.
    pub not_deleted: usize,
}

pub async fn redrive_sqs(at: &Endpoints) -> anyhow::Result<SqsRedrive> {
    let client = sqs::client().await;
    let dlq = at
        .sqs
        .dlq_url
        .as_deref()
        .context("set --dlq-url or SQS_DLQ_URL")?;
    let mut out = SqsRedrive::default();
    loop {
        let got = client
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .visibility_timeout(VISIBILITY_S)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .send()
            .await
            .map_err(aws_err("SQS ReceiveMessage"))?;
        let msgs = got.messages();
        if msgs.is_empty() {
            return Ok(out);
        }
        let entries = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| send_entry(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        let sent = client
            .send_message_batch()
            .queue_url(&at.sqs.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(aws_err("SQS SendMessageBatch"))?;
        for f in sent.failed() {
            tracing::warn!(
                id = f.id(),
                code = f.code(),
                "not sent back; it stays in the DLQ"
            );
        }
        out.not_sent += sent.failed().len();
        let handles: Vec<(String, String)> = sent
            .successful()
            .iter()
            .filter_map(|s| {
                let m = msgs.get(s.id().parse::<usize>().ok()?)?;
                Some((m.message_id()?.to_owned(), m.receipt_handle()?.to_owned()))
            })
            .collect();
        let deleted = sqs::delete(&client, dlq, &handles, DELETE_ATTEMPTS).await?;
        out.moved += sent.successful().len() - deleted.failed;
        out.not_deleted += deleted.failed;
    }
}

/// The message as it was: body, message attributes, trace header.
fn send_entry(i: usize, m: &Message) -> anyhow::Result<SendMessageBatchRequestEntry> {
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(i.to_string())
        .message_body(m.body().unwrap_or_default())
        .set_message_attributes(m.message_attributes().cloned());
    if let Some(trace) = m
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))
    {
        entry = entry.message_system_attributes(
            aws_sdk_sqs::types::MessageSystemAttributeNameForSends::AwsTraceHeader,
            aws_sdk_sqs::types::MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(trace)
                .build()?,
        );
    }
    Ok(entry.build()?)
}
