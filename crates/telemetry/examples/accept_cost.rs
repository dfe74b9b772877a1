//! CPU per message of the writer's pure path: decode + validate + BSON document.
//! `cargo run --release -p telemetry --example accept_cost`
use std::time::Instant;

use aws_lambda_events::sqs::SqsMessage;
use serde_json::Value;
use telemetry::sample::{DEFAULT_START_MS, Generator, rule_body};

fn main() {
    let n = 100_000;
    let values: Vec<Vec<u8>> = Generator::new(200, 11, DEFAULT_START_MS)
        .take(n)
        .enumerate()
        .map(|(i, p)| {
            let body = Value::Object(rule_body(&p, 1_767_225_600_000 + i as i64)).to_string();
            let mut msg = SqsMessage::default();
            msg.message_id = Some(format!("test-{i}"));
            telemetry::frame(&body)
                .unwrap()
                .into_kafka_record(&msg)
                .value
        })
        .collect();
    let now = chrono::Utc::now();
    for round in 0..3 {
        let start = Instant::now();
        let mut bytes = 0;
        for v in &values {
            let (key, t) = telemetry::accept(v, now).unwrap();
            bytes += telemetry::document::to_document(&key, &t, now)
                .unwrap()
                .as_bytes()
                .len();
        }
        let el = start.elapsed();
        println!(
            "round {round}: {:.2} us/msg ({bytes} doc bytes, {} value bytes avg)",
            el.as_secs_f64() * 1e6 / n as f64,
            values.iter().map(Vec::len).sum::<usize>() / n
        );
    }
}
