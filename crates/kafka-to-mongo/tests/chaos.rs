//! A mixed fault run with an exact audit: `make chaos` runs it long (200,000
//! messages from 200 devices, every fault several times); `make test` runs the
//! same driver short. Private servers, so the shared stack is never disturbed.
//!
//! Faults: the writer SIGKILLed and restarted; a second writer joining and
//! leaving; MongoDB SIGSTOPped past the grace during a rebalance; MongoDB
//! restarted; the broker restarted; the dead-letter topic unwritable for a while.
//! Audit: every unique valid message stored exactly once, every invalid one
//! dead-lettered (distinct offsets), device counts and `last` exact, nothing else.
//!
//! Scale: CHAOS_MESSAGES (default 20,000), CHAOS_DEVICES (200), CHAOS_KILLS (2;
//! 5 into the time-series collection), CHAOS_JOINS (1). Both tests run: the
//! regular collection and the time-series one. It ends with one `RESULT chaos_ok=... lost=... ...` line.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{Setup, Writer};
use mongodb::bson::{Document, doc};
use serde_json::{Map, Value, json};
use telemetry::envelope::header as h;
use telemetry::sample::{DEFAULT_START_MS, Generator, Rng};
use testkit::kafka;
use testkit::process::{Server, TempDir};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What was produced, and what the audit expects of it.
#[derive(Default)]
struct Expected {
    /// Unique valid idempotency keys, by device.
    keys: HashMap<String, HashSet<String>>,
    /// Per device: the newest (ts ms, seq or -1, key).
    last: HashMap<String, (i64, i64, String)>,
    invalid: usize,
    redelivered: usize,
    valid_records: usize,
}

/// (key, value) records in produce order, and what the audit expects.
fn workload(messages: usize, devices: usize) -> (Vec<(String, Vec<u8>)>, Expected) {
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

async fn produce(bootstrap: &str, topic: &str, records: &[(String, Vec<u8>)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = kafka::config()
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

struct Run {
    s: Setup,
    mongo: Server,
    broker: Server,
    recoveries: Vec<(String, f64)>,
    stalls: usize,
}

impl Run {
    async fn count(&self) -> u64 {
        self.s.count().await
    }

    /// Waits until the stored count grows past `from` (progress after a fault).
    async fn recovered(&mut self, fault: &str, from: u64, since: Instant, total: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = self.count().await;
            if n > from || n >= total {
                self.recoveries
                    .push((fault.to_owned(), since.elapsed().as_secs_f64()));
                return;
            }
            if Instant::now() > deadline {
                eprintln!("chaos: no progress within 120 s after {fault}");
                self.stalls += 1;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn writer(s: &Setup, kind: &str, name: &str) -> Writer {
    writer_with(s, kind, name, &[])
}

fn writer_with(s: &Setup, kind: &str, name: &str, extra: &[(&str, &str)]) -> Writer {
    let mut env = vec![
        ("MONGODB_COLLECTION_TYPE", kind),
        ("SHUTDOWN_GRACE_MS", "1000"),
        ("MONGODB_TIMEOUT_MS", "3000"),
        ("DLQ_TIMEOUT_MS", "2000"),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
    ];
    env.extend_from_slice(extra);
    Writer::start(s, name, &env)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_fault_run_stores_every_valid_message_once_and_dead_letters_every_invalid_one() {
    chaos("regular", 2).await;
}

/// The same faults into a time-series collection (no unique index: the writer's
/// own check keeps every measurement once).
#[tokio::test(flavor = "multi_thread")]
async fn the_same_faults_into_a_time_series_collection_store_every_message_once() {
    chaos("timeseries", 5).await;
}

/// `kills`: how many times the writer is SIGKILLed unless CHAOS_KILLS says.
async fn chaos(kind: &str, kills: usize) {
    let messages = env_usize("CHAOS_MESSAGES", 20_000);
    let devices = env_usize("CHAOS_DEVICES", 200);
    let kills = env_usize("CHAOS_KILLS", kills);
    let joins = env_usize("CHAOS_JOINS", 1);
    let started = Instant::now();
    let dir = TempDir::new("chaos");
    let mut broker = Server::nisshi(dir.path());
    broker.start();
    let mut mongo = Server::secantus(dir.path());
    mongo.start();
    let uri = format!("mongodb://{}/?directConnection=true", mongo.address());
    let s = Setup::on(&broker.address(), &uri).await;
    let (records, expected) = workload(messages, devices);
    let unique_valid: u64 = expected.keys.values().map(|k| k.len() as u64).sum();
    eprintln!(
        "chaos: {} records ({} valid, {} invalid, {} redelivered; {unique_valid} unique valid)",
        records.len(),
        expected.valid_records,
        expected.invalid,
        expected.redelivered,
    );
    // Produced in slices, one before each fault, so every fault hits batches in flight.
    let phases = kills + joins + 4;
    let mut slices = records.chunks(records.len().div_ceil(phases));
    let mut run = Run {
        s,
        mongo,
        broker,
        recoveries: Vec::new(),
        stalls: 0,
    };
    macro_rules! next_slice {
        () => {
            if let Some(slice) = slices.next() {
                produce(&run.s.bootstrap, &run.s.topic, slice).await;
            }
        };
    }

    // The first writer cannot write dead letters (the broker creates missing topics,
    // so "unwritable" is a name it refuses): it stores what it can and commits nothing
    // past an invalid message; its successor has a working dead-letter topic.
    let mut a = writer_with(
        &run.s,
        kind,
        "a0",
        &[("KAFKA_DLQ_TOPIC", "not a valid topic!")],
    );
    a.wait_ready().await;
    next_slice!();
    a.wait_metric("DeadLetterFailures", 1.0).await;

    for k in 0..kills {
        next_slice!();
        let from = run.count().await;
        a.sigkill();
        let t = Instant::now();
        a = writer(&run.s, kind, &format!("a{}", k + 1));
        let fault = if k == 0 {
            "writer SIGKILL (and the DLQ writable again)"
        } else {
            "writer SIGKILL"
        };
        run.recovered(fault, from, t, unique_valid).await;
    }
    for j in 0..joins {
        let mut b = writer(&run.s, kind, &format!("b{j}"));
        testkit::wait_for("b assigned", Duration::from_secs(60), || async {
            b.last_assigned().filter(|p| !p.is_empty())
        })
        .await;
        next_slice!();
        let from = run.count().await;
        assert!(b.sigterm().success(), "{}", b.log_text());
        let t = Instant::now();
        run.recovered("second writer left", from, t, unique_valid)
            .await;
    }

    // MongoDB hangs past the grace while a rebalance revokes every partition.
    let mut b = writer(&run.s, kind, "b-before-stop");
    testkit::wait_for("b assigned", Duration::from_secs(60), || async {
        b.last_assigned().filter(|p| !p.is_empty())
    })
    .await;
    let cancelled = a.log_count("worker cancelled");
    let from = run.count().await;
    run.mongo.pause();
    next_slice!();
    assert!(b.sigterm().success(), "{}", b.log_text());
    testkit::wait_for(
        "a's workers cancelled at the grace",
        Duration::from_secs(60),
        || async { (a.log_count("worker cancelled") > cancelled).then_some(()) },
    )
    .await;
    run.mongo.resume();
    let t = Instant::now();
    run.recovered(
        "MongoDB SIGSTOP past the grace during a rebalance",
        from,
        t,
        unique_valid,
    )
    .await;

    next_slice!();
    let from = run.count().await;
    run.mongo.restart();
    let t = Instant::now();
    run.recovered("MongoDB restart", from, t, unique_valid)
        .await;

    next_slice!();
    let from = run.count().await;
    run.broker.restart();
    let t = Instant::now();
    run.recovered("broker restart", from, t, unique_valid).await;
    for slice in slices {
        produce(&run.s.bootstrap, &run.s.topic, slice).await;
    }

    testkit::wait_for(
        "every offset committed",
        Duration::from_secs(600),
        || async {
            let (c, high) = run.s.committed_and_high();
            (c == high).then_some(())
        },
    )
    .await;
    let audit = audit(&run.s, &expected).await;
    let ok = audit.lost == 0
        && audit.duplicated == 0
        && audit.extra == 0
        && audit.dlq_missing == 0
        && audit.device_errors == 0
        && run.stalls == 0;
    for (fault, s) in &run.recoveries {
        eprintln!("chaos: recovered from {fault} in {s:.2} s");
    }
    let worst = run.recoveries.iter().map(|r| r.1).fold(0.0, f64::max);
    println!(
        "RESULT mode={kind} chaos_ok={} lost={} duplicated={} extra={} dlq_missing={} device_errors={} stalls={} messages={} unique_valid={unique_valid} invalid={} faults={} worst_recovery_s={worst:.2} duration_s={:.0}",
        u8::from(ok),
        audit.lost,
        audit.duplicated,
        audit.extra,
        audit.dlq_missing,
        audit.device_errors,
        run.stalls,
        records.len(),
        expected.invalid,
        run.recoveries.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(ok, "the chaos audit failed; see the RESULT line");
    drop(a);
}

#[derive(Debug, Default)]
struct Audit {
    lost: u64,
    duplicated: u64,
    extra: u64,
    dlq_missing: u64,
    device_errors: u64,
}

async fn audit(s: &Setup, expected: &Expected) -> Audit {
    use futures::TryStreamExt as _;
    let mut out = Audit::default();
    let db = s.db().await;
    let ids: Vec<Document> = db
        .collection::<Document>("telemetry")
        .find(doc! {})
        .projection(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut stored: HashMap<String, u64> = HashMap::new();
    for d in &ids {
        *stored
            .entry(d.get_str("_id").unwrap().to_owned())
            .or_default() += 1;
    }
    let all: HashSet<&String> = expected.keys.values().flatten().collect();
    out.lost = all.iter().filter(|k| !stored.contains_key(**k)).count() as u64;
    out.duplicated = stored.values().map(|n| n - 1).sum();
    out.extra = stored.keys().filter(|k| !all.contains(k)).count() as u64;

    let dead = kafka::read_all_on(&s.bootstrap, &s.dlq).await;
    let distinct: HashSet<(String, String)> = dead
        .iter()
        .filter_map(|m| {
            Some((
                kafka::header(m, h::ORIGINAL_PARTITION)?,
                kafka::header(m, h::ORIGINAL_OFFSET)?,
            ))
        })
        .collect();
    out.dlq_missing = (expected.invalid as u64).saturating_sub(distinct.len() as u64);
    if distinct.len() > expected.invalid {
        eprintln!(
            "chaos: {} distinct dead letters for {} invalid",
            distinct.len(),
            expected.invalid
        );
        out.extra += (distinct.len() - expected.invalid) as u64;
    }

    let devices = s.devices().await;
    for (device, keys) in &expected.keys {
        let Some(d) = devices.get(device) else {
            out.device_errors += 1;
            continue;
        };
        let count_ok = d.get_i64("count").ok() == Some(keys.len() as i64);
        let last_key = d
            .get_document("last")
            .ok()
            .and_then(|l| l.get_str("key").ok());
        let last_ok = last_key == expected.last.get(device).map(|l| l.2.as_str());
        if !(count_ok && last_ok) {
            eprintln!(
                "chaos: device {device}: {d} expected count {} last {:?}",
                keys.len(),
                expected.last.get(device)
            );
            out.device_errors += 1;
        }
    }
    out.device_errors += devices
        .keys()
        .filter(|d| !expected.keys.contains_key(*d))
        .count() as u64;
    out
}
