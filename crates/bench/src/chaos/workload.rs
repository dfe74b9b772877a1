//! The chaos run's records, in produce order, and what the audit expects of them:
//! 10% redeliveries of earlier records, 8% invalid (half unreadable, half breaking a
//! rule), the rest valid measurements from the sample generator.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Map, Value, json};
use telemetry::sample::{DEFAULT_START_MS, Generator, Rng};

/// What was produced, and what the audit expects of it.
#[derive(Default)]
pub struct Expected {
    /// Unique valid idempotency keys, by device.
    pub keys: HashMap<String, HashSet<String>>,
    /// Per device: the newest (ts ms, seq or -1, key).
    pub last: HashMap<String, (i64, i64, String)>,
    pub invalid: usize,
    pub redelivered: usize,
    pub valid_records: usize,
}

impl Expected {
    pub fn unique_valid(&self) -> u64 {
        self.keys.values().map(|k| k.len() as u64).sum()
    }
}

/// (key, value) records in produce order, and what the audit expects.
pub fn workload(messages: usize, devices: usize) -> (Vec<(String, Vec<u8>)>, Expected) {
    let mut rng = Rng::new(7);
    let mut expected = Expected::default();
    let mut records: Vec<(String, Vec<u8>)> = Vec::with_capacity(messages);
    let mut sent: Vec<usize> = Vec::new();
    let mut generator = Generator::new(devices, 11, DEFAULT_START_MS);
    let now = chrono::Utc::now();
    while records.len() < messages {
        let i = records.len();
        if rng.chance(10) && !sent.is_empty() {
            // A redelivery: the same record again, later.
            let again = sent[rng.below(sent.len() as u64) as usize];
            records.push(records[again].clone());
            expected.redelivered += 1;
            continue;
        }
        let payload = generator.next().expect("endless");
        if rng.chance(8) {
            records.push(invalid(&payload, i, &mut rng));
            expected.invalid += 1;
            continue;
        }
        let (key, value) = frame(&payload, i);
        let accepted = telemetry::accept(&value, now).expect("the generator's payloads are valid");
        let (id, t) = accepted;
        let device = t.device_id.clone();
        let order = (
            t.ts.timestamp_millis(),
            t.seq.map_or(-1, |s| s as i64),
            id.clone(),
        );
        let last = expected.last.entry(device.clone()).or_insert(order.clone());
        if (order.0, order.1) > (last.0, last.1) {
            *last = order;
        }
        expected.keys.entry(device).or_default().insert(id);
        sent.push(records.len());
        records.push((key, value));
        expected.valid_records += 1;
    }
    (records, expected)
}

fn frame(payload: &Map<String, Value>, i: usize) -> (String, Vec<u8>) {
    let body = Value::Object(telemetry::sample::rule_body(
        payload,
        DEFAULT_START_MS + i as i64,
    ));
    let mut msg = aws_lambda_events::sqs::SqsMessage::default();
    msg.message_id = Some(format!("chaos-{i}"));
    let record = telemetry::frame(&body.to_string())
        .expect("frames")
        .into_kafka_record(&msg);
    (record.key, record.value)
}

/// Every invalid record is distinct (its offset), half unreadable, half breaking a rule.
fn invalid(payload: &Map<String, Value>, i: usize, rng: &mut Rng) -> (String, Vec<u8>) {
    let device = payload["deviceId"].as_str().unwrap_or("x").to_owned();
    if rng.chance(50) {
        return (device, format!("not json #{i}").into_bytes());
    }
    let mut bad = payload.clone();
    bad.insert("ts".into(), json!("yesterday"));
    bad.insert("seq".into(), json!(10_000_000 + i as u64));
    frame(&bad, i)
}

/// Sends `records` to `topic`, acked; a broker restart meanwhile is waited out.
pub async fn produce(bootstrap: &str, topic: &str, records: &[(String, Vec<u8>)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = testkit::kafka::config()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .create()
        .expect("producer");
    let mut pending = Vec::with_capacity(records.len());
    for (key, value) in records {
        let mut rec = FutureRecord::to(topic).key(key).payload(value);
        loop {
            match producer.send_result(rec) {
                Ok(d) => break pending.push(d),
                Err((_, back)) => {
                    // librdkafka's queue is full: room comes as acks arrive.
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for d in pending {
        d.await
            .expect("delivery")
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
}
