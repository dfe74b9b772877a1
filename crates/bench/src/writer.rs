//! `bench writer`: the writer (release binary, its own process) draining
//! a 6-partition topic into MongoDB, against the pipeline's ceiling measured in the
//! same run: the lower of a raw rdkafka consumer draining the same topic and a raw
//! insert_many of the same documents into the same server, by one client per
//! partition as the writer inserts (three samples, around two writer runs). Also
//! partition scaling (1 -> 2 -> 6) and the writer's peak RSS. `--mode timeseries`
//! measures the time-series collection against a raw insert into one.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bridge_common::collection::{self, Bucketing, CollectionType, Granularity};
use bson::doc;
use bson::raw::RawDocumentBuf;
use futures::StreamExt as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde_json::{Map, Value};
use telemetry::sample::{DEFAULT_START_MS, Generator};
use testkit::process::{Server, TempDir, free_port};
use testkit::{StackEnv, unique};

#[derive(Debug, Clone, clap::Args)]
pub struct WriterBenchArgs {
    /// Messages for the main measurement (6 partitions).
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Messages per run of the scaling measurement.
    #[arg(long, default_value_t = 30_000)]
    pub scale_messages: usize,
    /// The writer binary (build it with `cargo build --release -p kafka-to-mongo`).
    #[arg(long, default_value = "target/release/kafka-to-mongo")]
    pub writer_bin: PathBuf,
    /// The collection type the writer stores into (MONGODB_COLLECTION_TYPE).
    #[arg(long, value_enum, default_value_t = CollectionType::Regular)]
    pub mode: CollectionType,
}

/// Partitions of the main measurement, and inserting clients of the ceiling.
const PARTITIONS: usize = 6;

fn payloads(n: usize) -> Vec<Map<String, Value>> {
    Generator::new(200, 11, DEFAULT_START_MS).take(n).collect()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn per_s(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn raw_consume(bootstrap: &str, topic: &str, n: usize) -> anyhow::Result<Duration> {
    let c: StreamConsumer = testkit::kafka::config()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("raw"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    c.subscribe(&[topic])?;
    let mut stream = c.stream();
    let first = stream.next().await.context("no message")??;
    drop(first);
    let started = Instant::now();
    for _ in 1..n {
        stream.next().await.context("stream ended")??;
    }
    Ok(started.elapsed())
}

/// A fresh collection of the writer's shape in `mode`: regular with its
/// `{deviceId: 1, ts: -1}` index, or time-series with its metaField and
/// `{source.deviceId: 1, ts: 1}` index. `indexed: false` only for reference.
pub async fn writer_shaped(
    db: &mongodb::Database,
    mode: CollectionType,
    indexed: bool,
) -> anyhow::Result<mongodb::Collection<RawDocumentBuf>> {
    let coll = db.collection::<RawDocumentBuf>("telemetry");
    let keys = match mode {
        CollectionType::Regular => doc! {"deviceId": 1, "ts": -1},
        CollectionType::Timeseries => {
            let spec = Bucketing::Granularity(Granularity::Seconds);
            db.run_command(collection::create_command("telemetry", spec, None))
                .await?;
            doc! {"source.deviceId": 1, "ts": 1}
        }
    };
    if indexed {
        coll.create_index(mongodb::IndexModel::builder().keys(keys).build())
            .await?;
    }
    Ok(coll)
}

/// The documents split as the writer's partitions hold them: by device.
fn by_partition(docs: &[(String, RawDocumentBuf)], partitions: usize) -> Vec<Vec<&RawDocumentBuf>> {
    let mut out = vec![Vec::new(); partitions];
    for (device, d) in docs {
        let p =
            telemetry::murmur2::partition_for_key(device.as_bytes(), partitions as i32) as usize;
        out[p].push(d);
    }
    out
}

/// Raw insert_many of `docs` (1,000 per call, unordered) by one client per
/// partition at once, as the writer inserts: one client alone understates a server
/// that uses more than one core.
async fn raw_insert(
    docs: &[(String, RawDocumentBuf)],
    mode: CollectionType,
    indexed: bool,
) -> anyhow::Result<(Duration, PhaseCpu)> {
    let db = testkit::mongo::fresh_database("bench_raw").await;
    let coll = writer_shaped(&db, mode, indexed).await?;
    let parts = by_partition(docs, PARTITIONS);
    let (started, mark) = (Instant::now(), CpuMark::now()?);
    let clients = parts.iter().map(|part| {
        let coll = coll.clone();
        async move {
            for chunk in part.chunks(1_000) {
                coll.insert_many(chunk.iter().copied())
                    .ordered(false)
                    .await?;
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(clients).await?;
    let (took, cpu) = (started.elapsed(), mark.since(docs.len())?);
    db.drop().await?;
    Ok((took, cpu))
}

/// Writer settings that change its speed or memory (README's configuration table).
const PASSED_THROUGH: &[&str] = &[
    "BATCH_SIZE",
    "IN_FLIGHT_MESSAGES",
    "BATCH_LINGER_MS",
    "KAFKA_PREFETCH_KBYTES",
    "KAFKA_FETCH_WAIT_MAX_MS",
    "MALLOC_ARENA_MAX",
];

struct WriterRun {
    child: Child,
    db: mongodb::Database,
    health: u16,
}

fn start_writer(
    bin: &PathBuf,
    bootstrap: &str,
    topic: &str,
    database: &str,
    mode: CollectionType,
) -> anyhow::Result<(Child, u16)> {
    let health = free_port();
    let mut command = Command::new(bin);
    command.env_clear();
    // The writer's tuning knobs reach it from this process's environment, so that
    // `KAFKA_PREFETCH_KBYTES=1024 make bench-writer` measures that setting.
    for name in PASSED_THROUGH {
        if let Ok(value) = std::env::var(name) {
            command.env(name, value);
        }
    }
    let child = command
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
        .env("BRIDGE_LOCAL_MODE", "1")
        .env("KAFKA_TOPIC", topic)
        .env("KAFKA_DLQ_TOPIC", "bench-dlq")
        .env("KAFKA_GROUP_ID", unique("bench-writer"))
        .env("MONGODB_URI", StackEnv::get().mongo_uri())
        .env("MONGODB_DATABASE", database)
        .env(
            "MONGODB_COLLECTION_TYPE",
            match mode {
                CollectionType::Regular => "regular",
                CollectionType::Timeseries => "timeseries",
            },
        )
        .env("HEALTH_BIND", "127.0.0.1")
        .env("HEALTH_PORT", health.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "{} (build it: cargo build --release -p kafka-to-mongo)",
                bin.display()
            )
        })?;
    Ok((child, health))
}

async fn ready(port: u16) {
    testkit::wait_for("the writer ready", Duration::from_secs(30), || async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        out.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
}

/// Each device's last message: a device's messages share a partition, which the
/// writer stores in order, so once these are stored all are. As a filter of point
/// lookups: by `_id` (regular), by device and ts then `_id` (time-series: no `_id`
/// index there, the `{source.deviceId, ts}` one serves it).
fn last_per_device(msgs: &[Map<String, Value>], mode: CollectionType) -> (bson::Document, usize) {
    let now = chrono::Utc::now();
    let mut last = std::collections::HashMap::new();
    for m in msgs {
        let value = Value::Object(m.clone()).to_string();
        if let Ok((key, t)) = telemetry::accept(value.as_bytes(), now) {
            last.insert(t.device_id.clone(), (key, t.ts));
        }
    }
    let n = last.len();
    let filter = match mode {
        CollectionType::Regular => {
            let keys: Vec<&String> = last.values().map(|(k, _)| k).collect();
            doc! {"_id": {"$in": keys}}
        }
        CollectionType::Timeseries => {
            let each: Vec<bson::Document> = last
                .iter()
                .map(|(device, (key, ts))| {
                    doc! {"source.deviceId": device, "ts": bson::DateTime::from_chrono(*ts), "_id": key}
                })
                .collect();
            doc! {"$or": each}
        }
    };
    (filter, n)
}

/// Starts a writer on a topic already holding `msgs`; returns docs/s from ready to
/// the last document. Completion is watched by `_id` lookups of each device's last
/// key (about 2 ms), not by counting the collection: a count scans it (55 ms at
/// 100,000 documents on SecantusDB), and every 50 ms that took CPU from the writer
/// being measured. One exact count confirms the total at the end.
async fn writer_run(
    bin: &PathBuf,
    bootstrap: &str,
    topic: &str,
    msgs: &[Map<String, Value>],
    mode: CollectionType,
) -> anyhow::Result<(WriterRates, WriterRun, PhaseCpu)> {
    let n = msgs.len();
    let (last, devices) = last_per_device(msgs, mode);
    let database = unique("bench").replace('-', "_");
    let (child, health) = start_writer(bin, bootstrap, topic, &database, mode)?;
    ready(health).await;
    let db = testkit::mongo::client().await.database(&database);
    let ready_at = Instant::now();
    let coll = db.collection::<RawDocumentBuf>("telemetry");
    let (started, before) = first_documents(&coll).await?;
    let mark = CpuMark::now()?;
    testkit::wait_for(
        "each device's last document",
        Duration::from_secs(600),
        || async {
            (coll.count_documents(last.clone()).await.ok()? as usize == devices).then_some(())
        },
    )
    .await;
    let (took, cpu) = (started.elapsed(), mark.since(n - before)?);
    let stored = coll.count_documents(doc! {}).await? as usize;
    anyhow::ensure!(
        stored == n,
        "{stored} documents stored once the last ones were, expected {n}"
    );
    let rates = WriterRates {
        steady: per_s(n - before, took),
        from_ready: per_s(n, ready_at.elapsed()),
        first_after: started - ready_at,
    };
    Ok((rates, WriterRun { child, db, health }, cpu))
}

/// The writer's throughput measured as the ceiling's consumer is, from its first
/// message on (the group join and the first fetch are a one-off start-up, not a
/// rate), and from ready as well, which includes them.
struct WriterRates {
    steady: f64,
    from_ready: f64,
    first_after: Duration,
}

/// Waits for the first stored documents; returns when they were seen and how many
/// there were (the documents the steady rate does not count). An `_id`-less
/// `find_one` on a near-empty collection costs the server next to nothing.
async fn first_documents(
    coll: &mongodb::Collection<RawDocumentBuf>,
) -> anyhow::Result<(Instant, usize)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while coll.find_one(doc! {}).await?.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "no document stored within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = Instant::now();
    Ok((seen, coll.count_documents(doc! {}).await? as usize))
}

fn peak_rss_mb(child: &Child) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmHWM")?;
    Ok(kb / 1_024.0)
}

/// Clock ticks per second, asked of `getconf` once.
fn clock_ticks() -> anyhow::Result<f64> {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    if let Some(hz) = HZ.get() {
        return Ok(*hz);
    }
    let out = Command::new("getconf").arg("CLK_TCK").output()?.stdout;
    let hz: f64 = String::from_utf8_lossy(&out)
        .trim()
        .parse()
        .context("CLK_TCK")?;
    Ok(*HZ.get_or_init(|| hz))
}

/// CPU seconds (user + system, all its threads) process `pid` has used so far.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the parenthesised command name, utime and stime are the 12th and 13th fields.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse::<f64>().context("stat field"))
        .sum::<anyhow::Result<f64>>()?;
    Ok(ticks / clock_ticks()?)
}

/// CPU seconds the whole machine has spent busy (all but idle and iowait), all cores.
fn machine_busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .context("/proc/stat")?
        .split_whitespace()
        .map(|f| f.parse::<f64>().context("/proc/stat field"))
        .collect::<anyhow::Result<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: f64 = fields.iter().take(8).sum::<f64>() - fields[3] - fields[4];
    Ok(busy / clock_ticks()?)
}

/// The stack's MongoDB server process (its pid file), to charge each phase the
/// server CPU it caused.
fn mongo_pid() -> anyhow::Result<u32> {
    let dir = StackEnv::get().var("IOT_BRIDGE_STATE_DIR");
    let pid = std::fs::read_to_string(format!("{dir}/run/mongo.pid"))?;
    pid.trim().parse().context("mongo.pid")
}

/// Where a phase's CPU went: is the server starved by the machine, or idle?
struct PhaseCpu {
    server_us_per_doc: f64,
    server_cores: f64,
    machine_cores: f64,
}

impl std::fmt::Display for PhaseCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server CPU {:.1} us/doc, {:.2} cores; machine busy {:.2} of {} cores",
            self.server_us_per_doc,
            self.server_cores,
            self.machine_cores,
            std::thread::available_parallelism().map_or(0, usize::from)
        )
    }
}

/// CPU counters at the start of a timed phase: the cores are those of the timed
/// part only, not of its set-up (dropping a database, starting the writer).
struct CpuMark {
    server_pid: u32,
    server: f64,
    machine: f64,
    at: Instant,
}

impl CpuMark {
    fn now() -> anyhow::Result<Self> {
        let server_pid = mongo_pid()?;
        Ok(Self {
            server: cpu_seconds(server_pid)?,
            machine: machine_busy_seconds()?,
            server_pid,
            at: Instant::now(),
        })
    }

    fn since(&self, docs: usize) -> anyhow::Result<PhaseCpu> {
        let secs = self.at.elapsed().as_secs_f64();
        let server = cpu_seconds(self.server_pid)? - self.server;
        Ok(PhaseCpu {
            server_us_per_doc: server * 1e6 / docs as f64,
            server_cores: server / secs,
            machine_cores: (machine_busy_seconds()? - self.machine) / secs,
        })
    }
}

async fn stop(mut run: WriterRun) -> anyhow::Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status();
    let _ = run.child.wait();
    let _ = run.health;
    run.db.drop().await?;
    Ok(())
}

/// Messages per partition, in partition order: keyed by device, a topic's
/// partitions are as uneven as its devices hash, and the busiest bounds the run.
fn partition_sizes(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<Vec<i64>> {
    let c: rdkafka::consumer::BaseConsumer = testkit::kafka::config()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    (0..partitions)
        .map(|p| {
            let (low, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            Ok(high - low)
        })
        .collect()
}

async fn topic_with(bootstrap: &str, partitions: i32, msgs: &[Map<String, Value>]) -> String {
    let topic = unique("bench-telemetry");
    testkit::kafka::create_topic_on(bootstrap, &topic, partitions).await;
    testkit::kafka::produce_telemetry(bootstrap, &topic, msgs).await;
    topic
}

pub async fn run(args: WriterBenchArgs) -> anyhow::Result<()> {
    let dir = TempDir::new("bench-writer");
    let mut broker = Server::nisshi_memory(dir.path());
    broker.start();
    let bootstrap = broker.address();
    testkit::kafka::create_topic_on(&bootstrap, "bench-dlq", 1).await;
    println!(
        "broker: Nisshi with memory storage on {bootstrap} (measures the writer, not the broker's disk); MongoDB: the stack's SecantusDB"
    );

    let mode = args.mode;
    let msgs = payloads(args.messages);
    let topic = topic_with(&bootstrap, PARTITIONS as i32, &msgs).await;
    let sizes = partition_sizes(&bootstrap, &topic, PARTITIONS as i32)?;
    let busiest = sizes.iter().max().copied().unwrap_or(0) as f64;
    println!(
        "messages per partition: {sizes:?}; the busiest holds {:.1}% (an even share: 16.7%)",
        busiest * 100.0 / args.messages as f64
    );
    let consumer_rate = per_s(
        args.messages - 1,
        raw_consume(&bootstrap, &topic, args.messages).await?,
    );
    let docs = ceiling_documents(&msgs, mode);
    let bare_rate = per_s(docs.len(), raw_insert(&docs, mode, false).await?.0);
    let (took, raw_cpu) = raw_insert(&docs, mode, true).await?;
    let insert_before = per_s(docs.len(), took);
    println!(
        "mode {mode:?}. raw consumer: {consumer_rate:.0} msg/s; raw insert_many ({PARTITIONS} clients, one per partition, 1,000 per call, unordered) into the writer's collection shape and index: {insert_before:.0} docs/s (without the index: {bare_rate:.0}); {raw_cpu}"
    );

    // The server drifts (up to +-20% between phases here), and one sample a side was
    // too few: the raw insert runs before, between and after two writer runs, and each
    // side of the ratio is the mean of its runs.
    let mut inserts = vec![insert_before];
    let (mut steady, mut from_ready, mut rss) = (Vec::new(), Vec::new(), 0.0_f64);
    for round in 1..=2 {
        let (rates, run, writer_cpu) =
            writer_run(&args.writer_bin, &bootstrap, &topic, &msgs, mode).await?;
        let peak = peak_rss_mb(&run.child)?;
        let cpu = cpu_seconds(run.child.id())?;
        stop(run).await?;
        let after = per_s(docs.len(), raw_insert(&docs, mode, true).await?.0);
        println!(
            "writer run {round}, 6 partitions, {} messages: {:.0} docs/s from its first stored document (first documents {} ms after ready), {:.0} docs/s from ready; peak RSS {peak:.1} MB; writer CPU {cpu:.2} s ({:.1} us/doc); {writer_cpu}. Raw insert_many after it: {after:.0} docs/s",
            args.messages,
            rates.steady,
            rates.first_after.as_millis(),
            rates.from_ready,
            cpu * 1e6 / args.messages as f64
        );
        inserts.push(after);
        steady.push(rates.steady);
        from_ready.push(rates.from_ready);
        rss = rss.max(peak);
    }
    let ceiling = consumer_rate.min(mean(&inserts));
    let rate = mean(&steady);
    println!(
        "ceiling {ceiling:.0}/s (the lower of the consumer and the mean of the {} inserts); writer {rate:.0} docs/s = {:.3} of the ceiling from its first stored document, {:.3} from ready; peak RSS {rss:.1} MB",
        inserts.len(),
        rate / ceiling,
        mean(&from_ready) / ceiling
    );

    let scale_msgs = payloads(args.scale_messages);
    let mut scaled = Vec::new();
    for partitions in [1, 2, 6] {
        let t = topic_with(&bootstrap, partitions, &scale_msgs).await;
        let (r, run, _) = writer_run(&args.writer_bin, &bootstrap, &t, &scale_msgs, mode).await?;
        stop(run).await?;
        println!(
            "scaling: {partitions} partition(s): {:.0} docs/s ({:.0} from ready)",
            r.steady, r.from_ready
        );
        scaled.push(r.steady);
    }
    println!(
        "RESULT mode={} writer_vs_raw={:.3} docs_per_s={rate:.0} ceiling_per_s={ceiling:.0} scale_2p={:.2} rss_mb={rss:.1}",
        match mode {
            CollectionType::Regular => "regular",
            CollectionType::Timeseries => "timeseries",
        },
        rate / ceiling,
        scaled[1] / scaled[0]
    );
    Ok(())
}

/// The documents the writer stores for `msgs` in `mode`, with their device: in
/// time-series mode with the provenance the writer adds (partition, offset, epoch),
/// so that the ceiling inserts what the writer inserts.
pub fn ceiling_documents(
    msgs: &[Map<String, Value>],
    mode: CollectionType,
) -> Vec<(String, RawDocumentBuf)> {
    let now = chrono::Utc::now();
    msgs.iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let value = Value::Object(m.clone()).to_string();
            let (key, t) = telemetry::accept(value.as_bytes(), now).ok()?;
            let mut d = telemetry::document::to_document_in(mode.layout(), &key, &t, now).ok()?;
            if mode == CollectionType::Timeseries {
                let p = telemetry::murmur2::partition_for_key(
                    t.device_id.as_bytes(),
                    PARTITIONS as i32,
                );
                d.append(
                    telemetry::document::field::KAFKA,
                    bson::rawdoc! {"partition": p, "offset": i as i64, "epoch": 1_i64},
                );
            }
            Some((t.device_id, d))
        })
        .collect()
}
