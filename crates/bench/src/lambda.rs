//! `bench lambda`: the sqs-to-kafka handler against a raw rdkafka
//! producer sending the same records to the same broker in the same run; warm
//! per-invocation overhead; cold init of the release binary under a Runtime API
//! emulator; zip size; peak RSS.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_lambda_events::sqs::SqsMessage;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use clap::Parser as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use telemetry::sample::{DEFAULT_START_MS, Generator, Rng, rule_body, sqs_record};
use testkit::args::LambdaArgs;
use testkit::process::{Server, TempDir};

use bridgectl::common::percentile;

#[derive(Debug, Clone, clap::Args)]
pub struct LambdaBenchArgs {
    /// 10-record invocations to time (the overhead distribution).
    #[arg(long, default_value_t = 400)]
    pub small_batches: usize,
    /// 1,000-record invocations to time.
    #[arg(long, default_value_t = 20)]
    pub large_batches: usize,
    /// Cold starts of the release binary to time.
    #[arg(long, default_value_t = 20)]
    pub cold_starts: usize,
    /// The x86_64 release zip (runs here: cold init and RSS).
    #[arg(
        long,
        default_value = "target/lambda-x86_64/sqs-to-kafka/bootstrap.zip"
    )]
    pub zip: PathBuf,
    /// The zip Terraform deploys (arm64), for its size.
    #[arg(long, default_value = "target/lambda/sqs-to-kafka/bootstrap.zip")]
    pub deploy_zip: PathBuf,
}

fn records(n: usize, seed: u64) -> Vec<SqsMessage> {
    let mut rng = Rng::new(seed);
    Generator::new(50, seed, DEFAULT_START_MS)
        .take(n)
        .enumerate()
        .map(|(i, p)| {
            let body = Value::Object(rule_body(&p, DEFAULT_START_MS + i as i64)).to_string();
            serde_json::from_value(sqs_record(&mut rng, &body, DEFAULT_START_MS + i as i64, 1))
                .unwrap_or_default()
        })
        .collect()
}

fn config(bootstrap: &str, topic: &str) -> anyhow::Result<sqs_to_kafka::Config> {
    let argv = LambdaArgs::local(bootstrap)
        .topic(topic)
        .dlq_topic("bench-dlq")
        .argv();
    Ok(sqs_to_kafka::Config::try_parse_from(argv)?)
}

/// The same records, mapped once up front, through a bare producer with the same settings.
async fn raw_send(
    producer: &FutureProducer,
    topic: &str,
    batch: &[telemetry::KafkaRecord],
) -> anyhow::Result<()> {
    let mut futures = Vec::with_capacity(batch.len());
    for r in batch {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let rec = FutureRecord::to(topic)
            .key(&r.key)
            .payload(&r.value)
            .headers(headers);
        futures.push(
            producer
                .send_result(rec)
                .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?,
        );
    }
    for f in futures {
        f.await?.map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    Ok(())
}

struct Run {
    handler: Vec<f64>,
    raw: Vec<f64>,
    records: usize,
}

impl Run {
    fn ratio(&self) -> f64 {
        self.raw.iter().sum::<f64>() / self.handler.iter().sum::<f64>()
    }

    fn per_s(times: &[f64], records: usize) -> f64 {
        (records * times.len()) as f64 / (times.iter().sum::<f64>() / 1_000.0)
    }
}

/// Alternates handler and raw batch by batch, so drift in the broker hits both alike.
async fn compare(
    bridge: &sqs_to_kafka::Bridge,
    producer: &FutureProducer,
    topic: &str,
    size: usize,
    n: usize,
) -> anyhow::Result<Run> {
    let mut run = Run {
        handler: Vec::with_capacity(n),
        raw: Vec::with_capacity(n),
        records: size,
    };
    for i in 0..n {
        let batch = records(size, i as u64 + 1);
        let mapped: Vec<_> = batch
            .iter()
            .filter_map(|m| {
                telemetry::frame(m.body.as_deref()?)
                    .ok()
                    .map(|f| f.into_kafka_record(m))
            })
            .collect();
        let t = Instant::now();
        raw_send(producer, topic, &mapped).await?;
        run.raw.push(t.elapsed().as_secs_f64() * 1_000.0);
        let t = Instant::now();
        let report = bridge
            .process(&batch, Instant::now() + Duration::from_secs(30))
            .await?;
        run.handler.push(t.elapsed().as_secs_f64() * 1_000.0);
        anyhow::ensure!(
            report.response().batch_item_failures.is_empty(),
            "the handler failed records during the benchmark"
        );
    }
    Ok(run)
}

pub async fn run(args: LambdaBenchArgs) -> anyhow::Result<()> {
    let dir = TempDir::new("bench-lambda");
    let mut broker = Server::nisshi_memory(dir.path());
    broker.start();
    let bootstrap = broker.address();
    let topic = "bench-telemetry";
    testkit::kafka::create_topic_on(&bootstrap, topic, 6).await;
    testkit::kafka::create_topic_on(&bootstrap, "bench-dlq", 1).await;
    println!(
        "broker: Nisshi with memory storage on {bootstrap} (measures the handler, not the broker's disk)"
    );

    let cfg = config(&bootstrap, topic)?;
    let conn = cfg.kafka.resolve().await?;
    let producer: FutureProducer = conn
        .producer_config(cfg.message_timeout_ms, cfg.linger_ms)
        .create()?;
    let bridge = sqs_to_kafka::Bridge::connect(cfg).await?;
    compare(&bridge, &producer, topic, 10, 20).await?; // warm-up: connections, metadata

    let small = compare(&bridge, &producer, topic, 10, args.small_batches).await?;
    let large = compare(&bridge, &producer, topic, 1_000, args.large_batches).await?;
    for (name, r) in [("10-record", &small), ("1,000-record", &large)] {
        println!(
            "{name} batches: handler {:.0} records/s, raw producer {:.0} records/s, ratio {:.3}",
            Run::per_s(&r.handler, r.records),
            Run::per_s(&r.raw, r.records),
            r.ratio()
        );
    }
    let (mut h, mut r) = (small.handler.clone(), small.raw.clone());
    h.sort_by(f64::total_cmp);
    r.sort_by(f64::total_cmp);
    let (p50, p99) = (
        percentile(&h, 50.0) - percentile(&r, 50.0),
        percentile(&h, 99.0) - percentile(&r, 99.0),
    );
    println!(
        "10-record invocation: handler p50 {:.2} ms p99 {:.2} ms; raw p50 {:.2} ms p99 {:.2} ms; overhead p50 {p50:.2} ms p99 {p99:.2} ms",
        percentile(&h, 50.0),
        percentile(&h, 99.0),
        percentile(&r, 50.0),
        percentile(&r, 99.0)
    );

    let bootstrap_bin = unzip_bootstrap(&args.zip, dir.path())?;
    let (cold, rss) =
        cold_start_and_rss(&bootstrap_bin, &bootstrap, topic, args.cold_starts).await?;
    let zip_mb = std::fs::metadata(&args.deploy_zip)
        .with_context(|| format!("{} (run `make lambda`)", args.deploy_zip.display()))?
        .len() as f64
        / 1_048_576.0;
    println!(
        "cold init (spawn -> first /next request), median of {}: {cold:.1} ms; peak RSS after 50 x 100-record invocations: {rss:.1} MB",
        args.cold_starts
    );
    println!("deploy zip {}: {zip_mb:.2} MB", args.deploy_zip.display());
    let ratio = small.ratio().min(large.ratio());
    println!(
        "RESULT lambda_vs_raw={ratio:.3} p99_overhead_ms={p99:.2} cold_init_ms={cold:.1} zip_mb={zip_mb:.2} rss_mb={rss:.1}"
    );
    Ok(())
}

fn unzip_bootstrap(zip: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let file = std::fs::File::open(zip)
        .with_context(|| format!("{} (run `make lambda`)", zip.display()))?;
    let mut archive = zip::ZipArchive::new(file)?;
    let mut entry = archive.by_name("bootstrap")?;
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes)?;
    let out = dir.join("bootstrap");
    std::fs::write(&out, bytes)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755))?;
    Ok(out)
}

/// A Lambda Runtime API: hands out queued events, collects responses, and notes
/// when the first `next` request arrived.
#[derive(Default)]
struct Emulator {
    events: Mutex<std::collections::VecDeque<(String, Vec<u8>)>>,
    responses: Mutex<HashMap<String, Vec<u8>>>,
    first_next: Mutex<Option<Instant>>,
    notify: tokio::sync::Notify,
}

async fn next(State(emu): State<Arc<Emulator>>) -> (StatusCode, HeaderMap, Vec<u8>) {
    emu.first_next
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Instant::now);
    loop {
        let notified = emu.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable(); // registered before the check, so no wake-up is missed
        if let Some((id, body)) = emu
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
        {
            let mut h = HeaderMap::new();
            let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
            h.insert(
                "lambda-runtime-aws-request-id",
                id.parse().unwrap_or_else(|_| "x".parse().expect("static")),
            );
            h.insert(
                "lambda-runtime-deadline-ms",
                deadline.to_string().parse().expect("digits"),
            );
            h.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:bench"
                    .parse()
                    .expect("static"),
            );
            return (StatusCode::OK, h, body);
        }
        notified.await;
    }
}

async fn respond(
    State(emu): State<Arc<Emulator>>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    emu.responses
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, body.to_vec());
    StatusCode::ACCEPTED
}

async fn serve_emulator() -> anyhow::Result<(Arc<Emulator>, String)> {
    let emu = Arc::new(Emulator::default());
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(respond))
        .route(
            "/2018-06-01/runtime/init/error",
            post(|| async { StatusCode::ACCEPTED }),
        )
        .with_state(Arc::clone(&emu));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((emu, addr))
}

fn spawn_function(
    bin: &Path,
    api: &str,
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<std::process::Child> {
    Ok(std::process::Command::new(bin)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "sqs-to-kafka")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
        .env("BRIDGE_LOCAL_MODE", "1")
        .env("KAFKA_TOPIC", topic)
        .env("KAFKA_DLQ_TOPIC", "bench-dlq")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?)
}

/// Median cold init over `n` fresh processes, then peak RSS of one that served 50 invocations.
async fn cold_start_and_rss(
    bin: &Path,
    bootstrap: &str,
    topic: &str,
    n: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut colds = Vec::with_capacity(n);
    for _ in 0..n {
        let (emu, api) = serve_emulator().await?;
        let spawned = Instant::now();
        let mut child = spawn_function(bin, &api, bootstrap, topic)?;
        let first = testkit::wait_for(
            "the function's first /next request",
            Duration::from_secs(10),
            || async { *emu.first_next.lock().unwrap_or_else(|e| e.into_inner()) },
        )
        .await;
        colds.push((first - spawned).as_secs_f64() * 1_000.0);
        let _ = child.kill();
        let _ = child.wait();
    }
    colds.sort_by(f64::total_cmp);

    let (emu, api) = serve_emulator().await?;
    let mut child = spawn_function(bin, &api, bootstrap, topic)?;
    for i in 0..50u64 {
        let event = serde_json::json!({ "Records": records(100, 1_000 + i) });
        emu.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((format!("req-{i}"), serde_json::to_vec(&event)?));
        emu.notify.notify_waiters();
    }
    testkit::wait_for("50 responses", Duration::from_secs(120), || async {
        (emu.responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
            == 50)
            .then_some(())
    })
    .await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let hwm_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmHWM")?;
    for body in emu
        .responses
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
    {
        let v: Value = serde_json::from_slice(body)?;
        anyhow::ensure!(
            v["batchItemFailures"].as_array().is_some_and(Vec::is_empty),
            "the release binary failed records: {v}"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok((percentile(&colds, 50.0), hwm_kb / 1_024.0))
}
