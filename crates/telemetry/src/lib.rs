//! The IoT bridge's domain: everything about a telemetry message that is not I/O.
//!
//! - [`parse`]: SQS body (raw JSON or base64) -> JSON object, spotting NaN/Infinity.
//! - [`validate`]: device payload schema v1, every violation with its path and rule.
//! - [`key`]: the idempotency key that makes redelivery harmless.
//! - [`envelope`]: SQS record -> Kafka record (key = deviceId, envelope value, headers).
//! - [`document`]: validated telemetry -> MongoDB document.
//! - [`dead_letter`]: records for the Kafka dead-letter topic, with reasons.
//! - [`route`]: the first hop's whole decision for one SQS record (telemetry or dead letter).
//! - [`redrive`]: the mark on a record sent back by `bridgectl dlq redrive`.
//! - [`murmur2`]: Kafka's Java partitioner, to know where a device lands.
//! - [`sample`]: deterministic sample traffic for fixtures, tests and benchmarks.

pub mod dead_letter;
pub mod document;
pub mod envelope;
pub mod error;
pub mod key;
pub mod murmur2;
pub mod parse;
pub mod redrive;
pub mod route;
pub mod sample;
pub mod validate;

pub use envelope::{Envelope, Framed, KafkaRecord, decode_value, frame};
pub use error::{Bounded, Classify, Rejection, Retry, Rule, Unparseable, Violation};
pub use key::idempotency_key;
pub use parse::{MAX_BODY_BYTES, ParsedBody, parse_body};
pub use route::{Routed, route};
pub use validate::{Telemetry, validate};

use chrono::{DateTime, Utc};

/// The whole writer-side check of one telemetry-topic value: decode, key, validate.
pub fn accept(value: &[u8], now: DateTime<Utc>) -> Result<(String, Telemetry), Rejection> {
    let envelope = decode_value(value)?;
    let telemetry = validate(envelope.body, &envelope.non_finite_paths, now)?;
    Ok((envelope.idempotency_key, telemetry))
}
