//! Records for the Kafka dead-letter topic. The value is always the original bytes,
//! untouched, so a fixed message can be re-submitted as it was; headers say why.

use aws_lambda_events::sqs::SqsMessage;

use crate::envelope::{KafkaRecord, header, sqs_headers};
use crate::error::Rejection;

/// Header values are bounded so one huge list of violations cannot exceed the broker's record limit.
const MAX_HEADER_CHARS: usize = 8 * 1024;

/// Where in the pipeline a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    SqsToKafka,
    KafkaToMongo,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::SqsToKafka => "sqs-to-kafka",
            Stage::KafkaToMongo => "kafka-to-mongo",
        }
    }
}

/// Where a telemetry-topic record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Broker or producer timestamp, epoch milliseconds, when the record has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    /// The source's headers named in [`header::CARRIED`] (trace, redrive mark).
    pub carried: &'a [(&'static str, String)],
}

/// An SQS body the first hop can never frame (not JSON, bad base64, no deviceId, too large).
pub fn from_sqs(msg: &SqsMessage, rejection: &Rejection) -> KafkaRecord {
    let mut headers = reason_headers(rejection, Stage::SqsToKafka);
    headers.extend(sqs_headers(msg));
    KafkaRecord {
        key: msg.message_id.clone().unwrap_or_default(),
        value: msg.body.clone().unwrap_or_default().into_bytes(),
        headers,
    }
}

/// A telemetry-topic record the writer refused: the original coordinates ride along.
pub fn from_kafka(source: &SourceRecord<'_>, rejection: &Rejection) -> KafkaRecord {
    let mut headers = reason_headers(rejection, Stage::KafkaToMongo);
    headers.push((header::ORIGINAL_TOPIC, source.topic.to_owned()));
    headers.push((header::ORIGINAL_PARTITION, source.partition.to_string()));
    headers.push((header::ORIGINAL_OFFSET, source.offset.to_string()));
    if let Some(ts) = source.timestamp_ms {
        headers.push((header::ORIGINAL_TIMESTAMP, ts.to_string()));
    }
    headers.extend(source.carried.iter().cloned());
    KafkaRecord {
        key: source
            .key
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        value: source.value.to_vec(),
        headers,
    }
}

fn reason_headers(rejection: &Rejection, stage: Stage) -> Vec<(&'static str, String)> {
    vec![
        (header::DLQ_REASON, truncate(rejection.to_string())),
        (header::DLQ_KIND, rejection.kind().to_owned()),
        (
            header::DLQ_VIOLATIONS,
            rejection.violations_json_within(MAX_HEADER_CHARS),
        ),
        (header::DLQ_STAGE, stage.as_str().to_owned()),
    ]
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_HEADER_CHARS {
        let mut cut = MAX_HEADER_CHARS;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}
