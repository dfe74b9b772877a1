//! `bridgectl bench e2e`: latency from the SQS send to the document being visible
//! in MongoDB (a change stream reports each insert), while the local event-source
//! mapping (with the sqs-to-kafka handler) and the writer run, at a fixed rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use bson::Document;
use clap::Parser as _;
use futures::StreamExt as _;
use serde_json::json;
use testkit::{StackEnv, unique};

use crate::common::{parse_duration, percentile, sqs};
use crate::esm::EsmArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct E2eBenchArgs {
    /// Messages per second sent to SQS.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
}

pub async fn run(args: E2eBenchArgs) -> anyhow::Result<()> {
    let env = StackEnv::get();
    let client = sqs().await;
    let name = unique("e2e");
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(dlq.queue_url().unwrap_or_default())
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let queue = client
        .create_queue()
        .queue_name(&name)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}).to_string(),
        )
        .send()
        .await?;
    let queue_url = queue.queue_url().unwrap_or_default().to_owned();
    let (topic, dlq_topic, database) = (
        unique("e2e-telemetry"),
        unique("e2e-dlq"),
        unique("e2e").replace('-', "_"),
    );
    testkit::kafka::create_topic(&topic, 6).await;
    testkit::kafka::create_topic(&dlq_topic, 1).await;
    let bootstrap = env.kafka_bootstrap();
    println!(
        "stack: SQS on moto, Kafka on the stack's Nisshi (sqlite), MongoDB on SecantusDB; queue {name}"
    );

    let writer_cfg = kafka_to_mongo::Config::try_parse_from([
        "kafka-to-mongo",
        "--bootstrap-servers",
        bootstrap,
        "--security-protocol",
        "PLAINTEXT",
        "--local-mode",
        "true",
        "--topic",
        &topic,
        "--dlq-topic",
        &dlq_topic,
        "--group-id",
        &unique("e2e-writer"),
        "--mongodb-uri",
        env.mongo_uri(),
        "--database",
        &database,
        "--health-port",
        "0",
        "--health-bind",
        "127.0.0.1",
        "--batch-linger-ms",
        "5",
        "--batch-size",
        "500",
    ])?;
    let (stop_writer, writer_stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(kafka_to_mongo::run(writer_cfg, async {
        let _ = writer_stopped.await;
    }));

    let db = testkit::mongo::client().await.database(&database);
    let coll = db.collection::<Document>("telemetry");
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
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

    let lambda = sqs_to_kafka::Config::try_parse_from([
        "sqs-to-kafka",
        "--bootstrap-servers",
        bootstrap,
        "--security-protocol",
        "PLAINTEXT",
        "--local-mode",
        "true",
        "--topic",
        &topic,
        "--dlq-topic",
        &dlq_topic,
    ])?;
    let esm_args = EsmArgs {
        sqs: crate::common::SqsArgs {
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
        concurrency: 8,
        invoke_url: None,
        function_name: "sqs-to-kafka".into(),
        json: true,
    };
    let (stop_esm, esm_stopped) = tokio::sync::oneshot::channel::<()>();
    let esm = tokio::spawn(crate::esm::run(esm_args, Some(lambda), async {
        let _ = esm_stopped.await;
    }));

    // Sender: one SendMessageBatch of 10 every 10/rate seconds.
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let total = (args.rate * args.duration.as_secs_f64()) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(10.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for batch_start in (0..total).step_by(10) {
        tick.tick().await;
        let (client, url, sent_at) = (client.clone(), queue_url.clone(), Arc::clone(&sent_at));
        sends.spawn(async move {
            let mut entries = Vec::with_capacity(10);
            let mut keys = Vec::with_capacity(10);
            for i in batch_start..(batch_start + 10).min(total) {
                let device = format!("e2e-{:03}", i % 100);
                let body = json!({"deviceId": device, "seq": i, "ts": chrono::Utc::now().timestamp_millis(), "readings": {"v": i},
                    "mqtt_topic": format!("devices/{device}/telemetry"), "client_id": device, "received_at": chrono::Utc::now().timestamp_millis()});
                keys.push(format!("{device}#seq:{i}"));
                entries.push(SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body.to_string()).build()?);
            }
            let now = Instant::now();
            sent_at.lock().unwrap_or_else(|e| e.into_inner()).extend(keys.into_iter().map(|k| (k, now)));
            client.send_message_batch().queue_url(url).set_entries(Some(entries)).send().await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = sends.join_next().await {
        r??;
    }
    let send_secs = started.elapsed().as_secs_f64();
    testkit::wait_for(
        &format!("all {total} documents"),
        Duration::from_secs(180),
        || async {
            (arrivals.lock().unwrap_or_else(|e| e.into_inner()).len() >= total).then_some(())
        },
    )
    .await;

    let _ = stop_esm.send(());
    let _ = stop_writer.send(());
    let _ = esm.await;
    let _ = writer.await;
    watcher.abort();
    let sent = sent_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let arrived = arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(k, s)| Some((*arrived.get(k)? - *s).as_secs_f64() * 1_000.0))
        .collect();
    lat.sort_by(f64::total_cmp);
    let achieved = total as f64 / send_secs;
    println!(
        "{total} messages sent at {achieved:.0}/s over {send_secs:.1}s; latency SQS send -> document visible: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    db.drop().await?;
    println!(
        "RESULT e2e_p50_ms={:.0} e2e_p99_ms={:.0} rate={achieved:.0}",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0)
    );
    Ok(())
}
