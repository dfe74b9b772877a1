//! Deterministic sample traffic: device payloads, the SQS bodies an IoT rule makes
//! of them, and Lambda SQS events. The same seed gives the same bytes on every
//! machine, so the committed fixtures in `events/` can be checked and extended.

use chrono::{DateTime, SecondsFormat, Utc};
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};

use crate::validate::{FIELD_CLIENT_ID, FIELD_MQTT_TOPIC, FIELD_RECEIVED_AT};

/// 2026-01-01T00:00:00Z: sample timestamps start here, so they stay valid (not in the future).
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000;
pub const SAMPLE_QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:iot-bridge-telemetry";

/// SplitMix64: tiny, fast, and identical everywhere (no dependency on a rand version).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Uniform in `[lo, hi)`, rounded to 2 decimals like a real sensor report.
    pub fn reading(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((lo + unit * (hi - lo)) * 100.0).round() / 100.0
    }

    /// A version-4-shaped UUID, as SQS message ids are.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Thermo,
    Meter,
    Tracker,
}

#[derive(Debug, Clone)]
struct Device {
    id: String,
    kind: Kind,
    seq: u64,
    t_ms: i64,
    /// Legacy firmware sends no seq: its key falls back to ts + readings.
    sends_seq: bool,
    epoch_ts: bool,
}

/// An endless, deterministic stream of valid device payloads from `devices` devices,
/// with some readings missing and some messages of a device swapped (out of order).
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    devices: Vec<Device>,
    pending: Option<Map<String, Value>>,
}

impl Generator {
    pub fn new(devices: usize, seed: u64, start_ms: i64) -> Self {
        let devices = (0..devices.max(1))
            .map(|i| {
                let n = i + 1;
                let (kind, id) = match i % 3 {
                    0 => (Kind::Thermo, format!("thermo-{n:04}")),
                    1 => (Kind::Meter, format!("site-a.meter-{n:04}")),
                    _ => (Kind::Tracker, format!("fleet:tracker-{n:04}")),
                };
                Device {
                    id,
                    kind,
                    seq: 0,
                    t_ms: start_ms + i as i64 * 37,
                    sends_seq: n % 5 != 0,
                    epoch_ts: n % 2 == 1,
                }
            })
            .collect();
        Self {
            rng: Rng::new(seed),
            devices,
            pending: None,
        }
    }

    pub fn device_ids(&self) -> impl Iterator<Item = &str> {
        self.devices.iter().map(|d| d.id.as_str())
    }

    fn step(&mut self, idx: usize) -> Map<String, Value> {
        let gap = 1_000 + self.rng.below(4_000) as i64;
        let device = &mut self.devices[idx];
        device.seq += 1;
        device.t_ms += gap;
        let (id, kind, seq, t_ms, sends_seq, epoch_ts) = (
            device.id.clone(),
            device.kind,
            device.seq,
            device.t_ms,
            device.sends_seq,
            device.epoch_ts,
        );
        let rng = &mut self.rng;
        let mut m = Map::new();
        m.insert("deviceId".into(), json!(id));
        if sends_seq {
            m.insert("seq".into(), json!(seq));
        }
        m.insert(
            "ts".into(),
            if epoch_ts {
                json!(t_ms)
            } else {
                json!(rfc3339(t_ms))
            },
        );
        let mut readings = Map::new();
        match kind {
            Kind::Thermo => {
                readings.insert("temperature_c".into(), json!(rng.reading(-10.0, 40.0)));
                readings.insert("humidity_pct".into(), json!(rng.reading(10.0, 95.0)));
                readings.insert("battery_v".into(), json!(rng.reading(3.0, 4.2)));
            }
            Kind::Meter => {
                readings.insert("power_w".into(), json!(rng.reading(0.0, 5_000.0)));
                readings.insert("voltage_v".into(), json!(rng.reading(220.0, 240.0)));
                readings.insert("relay_on".into(), json!(rng.chance(70)));
            }
            Kind::Tracker => {
                readings.insert("lat".into(), json!(rng.reading(48.0, 49.0)));
                readings.insert("lon".into(), json!(rng.reading(2.0, 3.0)));
                readings.insert("speed_kmh".into(), json!(rng.reading(0.0, 120.0)));
                let status = ["moving", "idle", "charging"][rng.below(3) as usize];
                readings.insert("status".into(), json!(status));
            }
        }
        if rng.chance(10) {
            // A sensor that did not answer this round: its reading is simply absent.
            let victim = readings
                .keys()
                .nth(rng.below(readings.len() as u64) as usize)
                .cloned();
            if let Some(k) = victim {
                readings.remove(&k);
            }
        }
        m.insert("readings".into(), Value::Object(readings));
        match kind {
            Kind::Tracker => {
                let rssi = -50 - rng.below(50) as i64;
                m.insert(
                    "meta".into(),
                    json!({"fw": "2.4.1", "net": {"type": "lte-m", "rssi": rssi}}),
                );
            }
            Kind::Meter => {
                m.insert("site".into(), json!("plant-a"));
            }
            Kind::Thermo if rng.chance(20) => {
                m.insert("meta".into(), json!({"fw": "1.9.0"}));
            }
            Kind::Thermo => {}
        }
        m
    }
}

impl Iterator for Generator {
    type Item = Map<String, Value>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(m) = self.pending.take() {
            return Some(m);
        }
        let idx = self.rng.below(self.devices.len() as u64) as usize;
        let first = self.step(idx);
        if self.rng.chance(4) {
            // Out of order: the device's next message overtakes this one.
            let second = self.step(idx);
            self.pending = Some(first);
            return Some(second);
        }
        Some(first)
    }
}

pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What the IoT rule `SELECT *, topic() AS mqtt_topic, clientid() AS client_id,
/// timestamp() AS received_at FROM 'devices/+/telemetry'` makes of a device payload.
pub fn rule_body(payload: &Map<String, Value>, received_at_ms: i64) -> Map<String, Value> {
    let device = payload
        .get("deviceId")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let mut body = payload.clone();
    body.insert(
        FIELD_MQTT_TOPIC.into(),
        json!(format!("devices/{device}/telemetry")),
    );
    body.insert(FIELD_CLIENT_ID.into(), json!(device));
    body.insert(FIELD_RECEIVED_AT.into(), json!(received_at_ms));
    body
}

/// One SQS record as the Lambda event-source mapping delivers it.
pub fn sqs_record(rng: &mut Rng, body: &str, sent_ms: i64, receive_count: u32) -> Value {
    let trace = format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=1",
        sent_ms / 1000,
        rng.next_u64() as u128 * 0x1_0000 + 7,
        rng.next_u64()
    );
    let receipt: String = (0..4).map(|_| format!("{:016x}", rng.next_u64())).collect();
    json!({
        "messageId": rng.uuid(),
        "receiptHandle": format!("AQEB{receipt}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": receive_count.to_string(),
            "AWSTraceHeader": trace,
            "SentTimestamp": sent_ms.to_string(),
            "SenderId": "AROAEXAMPLEIOTRULEROLE:iot-bridge-rule",
            "ApproximateFirstReceiveTimestamp": (sent_ms + 12).to_string()
        },
        "messageAttributes": {},
        "md5OfBody": hex::encode(Md5::digest(body.as_bytes())),
        "eventSource": "aws:sqs",
        "eventSourceARN": SAMPLE_QUEUE_ARN,
        "awsRegion": "us-east-1"
    })
}

/// `{"Records": [...]}`: a Lambda SQS event.
pub fn sqs_event(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

/// The committed fixtures: `(path under events/, contents)`. `bridgectl generate fixtures`
/// writes them; a test checks the committed files still equal this.
pub fn fixture_set() -> Vec<(String, String)> {
    const SEED: u64 = 1;
    let payloads: Vec<Map<String, Value>> = Generator::new(20, SEED, DEFAULT_START_MS)
        .take(1_200)
        .collect();
    let mut files = vec![("iot/devices-20-seed-1.jsonl".to_owned(), jsonl(&payloads))];

    let mut rng = Rng::new(SEED);
    // Bodies of payloads `range`, received by IoT 250 ms apart.
    let bodies = |range: std::ops::Range<usize>| -> Vec<(String, i64)> {
        range
            .map(|i| {
                let at = DEFAULT_START_MS + 400 + 250 * i as i64;
                (Value::Object(rule_body(&payloads[i], at)).to_string(), at)
            })
            .collect()
    };
    let batch = |bodies: Vec<(String, i64)>, rng: &mut Rng| {
        let records = bodies
            .into_iter()
            .map(|(b, at)| sqs_record(rng, &b, at + 30, 1))
            .collect();
        pretty(&sqs_event(records))
    };

    files.push((
        "sqs/valid-batch-10.json".into(),
        batch(bodies(0..10), &mut rng),
    ));

    let mut mixed = bodies(10..16);
    for bad in MIXED_BATCH_INVALID_BODIES {
        mixed.insert(mixed.len() / 2, (bad.to_owned(), DEFAULT_START_MS + 5_000));
    }
    files.push(("sqs/mixed-batch.json".into(), batch(mixed, &mut rng)));

    let b64 = bodies(16..26)
        .into_iter()
        .map(|(b, at)| (base64_encode(&b), at))
        .collect();
    files.push(("sqs/base64-batch.json".into(), batch(b64, &mut rng)));

    // An MQTT QoS 1 redelivery: IoT writes the same payload again, with a later timestamp(), under a new SQS id.
    let mut dup = bodies(26..27);
    let at = dup[0].1 + 2_000;
    dup.push((Value::Object(rule_body(&payloads[26], at)).to_string(), at));
    files.push((
        "sqs/duplicate-different-ids.json".into(),
        batch(dup, &mut rng),
    ));

    files.push((
        "sqs/batch-100.json".into(),
        batch(bodies(27..127), &mut rng),
    ));
    files
}

/// The invalid records of `sqs/mixed-batch.json`: two the Lambda dead-letters
/// (not JSON, no deviceId) and two it forwards for the writer to refuse.
pub const MIXED_BATCH_INVALID_BODIES: [&str; 4] = [
    "temperature=21.5;device=thermo-0001",
    r#"{"ts":1767225600000,"readings":{"temperature_c":21.5}}"#,
    r#"{"deviceId":"thermo-0001","seq":9001,"ts":"2026-01-01T00:00:00Z","readings":{"temperature_c":NaN}}"#,
    r#"{"deviceId":"site-a.meter-0002","seq":9002,"ts":"yesterday","readings":{"$where":"sleep(1000)"}}"#,
];

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub fn jsonl(items: &[Map<String, Value>]) -> String {
    items
        .iter()
        .map(|m| format!("{}\n", Value::Object(m.clone())))
        .collect()
}

fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}
