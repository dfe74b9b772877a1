//! `bench e2e`: latency from the SQS send to the document being visible
//! in MongoDB (a change stream reports each insert), while the local event-source
//! mapping (with the sqs-to-kafka handler) and the writer run, at a fixed rate.
//! First, the floor: SQS alone (send -> receive -> delete) at the same rate, so a
//! slow emulator is told apart from a slow pipeline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Document, doc};
use clap::Parser as _;
use futures::StreamExt as _;
use rdkafka::Message as _;
use serde_json::json;
use testkit::args::{LambdaArgs, WriterArgs};
use testkit::{StackEnv, unique};

use super::e2e_sqs::{Clock, create_queue, latencies, latency_by_key, send_paced, sqs_floor};
use bridgectl::common::{parse_duration, percentile};
use bridgectl::esm::EsmArgs;
use bridgectl::sqs;

#[derive(Debug, Clone, clap::Args)]
pub struct E2eBenchArgs {
    /// Messages per second sent to SQS.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Event-source mapping pollers at start. AWS starts an SQS mapping with 5 and
    /// adds more while messages wait; the bench starts at 20, so the measured part
    /// does not include the climb (BENCHMARKS.md: 10 keep up, with a longer queue wait).
    #[arg(long, default_value_t = 20)]
    pub pollers: u16,
    /// Most pollers the mapping scales to while messages wait.
    #[arg(long, default_value_t = 40)]
    pub max_pollers: u16,
    /// Messages sent and stored before measuring (consumer-group join, first batches).
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// How long after the last send every document must be visible.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub settle: Duration,
}

/// Splits each measured latency in three, by the clocks the records carry: the
/// document's `receivedAt` (the sender's clock when it made the body), the Kafka
/// record's timestamp (the handler's producer), the document's `ingestedAt` (the
/// writer took the message) and the change stream's report.
async fn stage_split(
    coll: &mongodb::Collection<Document>,
    topic: &str,
    records: usize,
    sent_at: &Clock,
    arrivals: &Clock,
) -> anyhow::Result<()> {
    let totals = latency_by_key(sent_at, arrivals);
    let mut produced_at = HashMap::with_capacity(records);
    for r in testkit::kafka::read_n(topic, records).await {
        let key = testkit::kafka::header(&r, telemetry::envelope::header::IDEMPOTENCY_KEY);
        if let (Some(key), Some(ms)) = (key, r.timestamp().to_millis()) {
            produced_at.insert(key, ms);
        }
    }
    let projection = doc! {"receivedAt": 1, "ingestedAt": 1};
    let mut cursor = coll.find(doc! {}).projection(projection).await?;
    let mut stages: [Vec<f64>; 3] = Default::default();
    while let Some(d) = cursor.next().await.transpose()? {
        let (Ok(id), Ok(received), Ok(ingested)) = (
            d.get_str("_id"),
            d.get_datetime("receivedAt"),
            d.get_datetime("ingestedAt"),
        ) else {
            continue;
        };
        let (Some(total), Some(produced)) = (totals.get(id), produced_at.get(id)) else {
            continue;
        };
        let (received, ingested) = (received.timestamp_millis(), ingested.timestamp_millis());
        stages[0].push((produced - received) as f64);
        stages[1].push((ingested - produced) as f64);
        stages[2].push(total - (ingested - received) as f64);
    }
    let names = [
        "send -> produced (SQS, ESM)",
        "produced -> taken by the writer (Kafka)",
        "taken -> visible (MongoDB)",
    ];
    let parts: Vec<String> = names
        .iter()
        .zip(stages.iter_mut())
        .map(|(name, v)| {
            v.sort_by(f64::total_cmp);
            format!(
                "{name} p50 {:.0} ms, p99 {:.0} ms",
                percentile(v, 50.0),
                percentile(v, 99.0)
            )
        })
        .collect();
    println!("stages: {}", parts.join("; "));
    Ok(())
}

pub async fn run(args: E2eBenchArgs) -> anyhow::Result<()> {
    let env = StackEnv::get();
    let client = sqs::client().await;
    let floor_secs = args.duration.min(Duration::from_secs(10));
    let floor = sqs_floor(&client, args.rate, floor_secs, args.pollers).await?;
    println!(
        "SQS alone ({}), {:.0} msg/s for {floor_secs:?}: send -> receive p50 {:.0} ms, p99 {:.0} ms ({} of {} received)",
        env.sqs_endpoint(),
        args.rate,
        percentile(&floor.latencies, 50.0),
        percentile(&floor.latencies, 99.0),
        floor.latencies.len(),
        floor.sent
    );

    let name = unique("e2e");
    let queue_url = create_queue(&client, &name, 5).await?;
    let (topic, dlq_topic, database) = (
        unique("e2e-telemetry"),
        unique("e2e-dlq"),
        unique("e2e").replace('-', "_"),
    );
    testkit::kafka::create_topic(&topic, 6).await;
    testkit::kafka::create_topic(&dlq_topic, 1).await;
    let bootstrap = env.kafka_bootstrap();
    println!(
        "pipeline: SQS ({}) -> local ESM ({} to {} pollers) + sqs-to-kafka handler -> Nisshi (sqlite) -> kafka-to-mongo -> SecantusDB; queue {name}",
        env.sqs_endpoint(),
        args.pollers,
        args.max_pollers.max(args.pollers)
    );

    let writer_cfg = kafka_to_mongo::Config::try_parse_from(
        WriterArgs::local(bootstrap, env.mongo_uri())
            .topic(&topic)
            .dlq_topic(&dlq_topic)
            .group(&unique("e2e-writer"))
            .database(&database)
            .set("--batch-linger-ms", 5)
            .set("--batch-size", 500)
            .argv(),
    )?;
    let (stop_writer, writer_stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(kafka_to_mongo::run(writer_cfg, async {
        let _ = writer_stopped.await;
    }));

    let db = testkit::mongo::client().await.database(&database);
    let coll = db.collection::<Document>("telemetry");
    let arrivals: Clock = Arc::default();
    let mut changes = coll.watch().await?;
    let sink = Arc::clone(&arrivals);
    let watcher = tokio::spawn(async move {
        while let Some(Ok(event)) = changes.next().await {
            if let Some(id) = event
                .document_key
                .as_ref()
                .and_then(|k| k.get_str("_id").ok())
            {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.to_owned(), Instant::now());
            }
        }
    });

    let lambda = sqs_to_kafka::Config::try_parse_from(
        LambdaArgs::local(bootstrap)
            .topic(&topic)
            .dlq_topic(&dlq_topic)
            .argv(),
    )?;
    let esm_args = EsmArgs {
        sqs: bridgectl::common::SqsArgs {
            queue_url: queue_url.clone(),
            dlq_url: None,
        },
        batch_size: 10,
        batching_window: Duration::ZERO,
        visibility_timeout: 30,
        wait_time: 1,
        function_timeout: Duration::from_secs(30),
        until_empty: false,
        max_batches: None,
        concurrency: args.pollers,
        max_concurrency: args.max_pollers.max(args.pollers),
        invoke_url: None,
        function_name: "sqs-to-kafka".into(),
        json: true,
    };
    let (stop_esm, esm_stopped) = tokio::sync::oneshot::channel::<()>();
    let esm = tokio::spawn(bridgectl::esm::run(esm_args, Some(lambda), async {
        let _ = esm_stopped.await;
    }));

    let body = |i: usize| {
        let device = format!("e2e-{:03}", i % 100);
        let now = chrono::Utc::now().timestamp_millis();
        let body = json!({"deviceId": device, "seq": i, "ts": now, "readings": {"v": i},
            "mqtt_topic": format!("devices/{device}/telemetry"), "client_id": device, "received_at": now});
        (format!("{device}#seq:{i}"), body.to_string())
    };
    let count = |c: &Clock| c.lock().unwrap_or_else(|e| e.into_inner()).len();

    // Warm-up, not measured: the group join and the first batches.
    let warm: Clock = Arc::default();
    send_paced(&client, &queue_url, 0..args.warmup, args.rate, &warm, body).await?;
    testkit::wait_for("the warm-up documents", args.settle, || async {
        (count(&arrivals) >= args.warmup).then_some(())
    })
    .await;

    let total = (args.rate * args.duration.as_secs_f64()) as usize;
    let sent_at: Clock = Arc::default();
    let progress = {
        let (sent_at, arrivals) = (Arc::clone(&sent_at), Arc::clone(&arrivals));
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                println!(
                    "  {:>4.0}s: sent {} of {total}, stored {}",
                    started.elapsed().as_secs_f64(),
                    count(&sent_at),
                    count(&arrivals).saturating_sub(args.warmup)
                );
            }
        })
    };
    let range = args.warmup..args.warmup + total;
    let send_secs = send_paced(&client, &queue_url, range, args.rate, &sent_at, body).await?;
    let settle_started = Instant::now();
    while count(&arrivals) < args.warmup + total && settle_started.elapsed() < args.settle {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.abort();
    let _ = stop_esm.send(());
    let _ = stop_writer.send(());
    match esm.await {
        Ok(Ok(esm)) => println!(
            "esm: {} invocations, {} records; pollers: {} at start, {} at most",
            esm.invocations, esm.received, args.pollers, esm.peak_pollers
        ),
        Ok(Err(e)) => println!("esm failed: {e:#}"),
        Err(e) => println!("esm task failed: {e}"),
    }
    let _ = writer.await;
    watcher.abort();

    let lat = latencies(&sent_at, &arrivals);
    let achieved = total as f64 / send_secs;
    println!(
        "{total} messages sent at {achieved:.0}/s over {send_secs:.1}s; {} stored; SQS send -> document visible: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    stage_split(&coll, &topic, args.warmup + total, &sent_at, &arrivals).await?;
    db.drop().await?;
    let _ = client.delete_queue().queue_url(&queue_url).send().await;
    anyhow::ensure!(
        lat.len() == total,
        "only {} of {total} documents were visible {:?} after the last send: the pipeline did not keep up (see the progress lines)",
        lat.len(),
        args.settle
    );
    println!(
        "RESULT e2e_p50_ms={:.0} e2e_p99_ms={:.0} rate={achieved:.0} sqs_floor_p99_ms={:.0}",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&floor.latencies, 99.0)
    );
    Ok(())
}
