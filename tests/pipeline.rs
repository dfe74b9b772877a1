//! A fresh pipeline on the local stack for a test: its own queue pair, topics, writer
//! group and database, the environment bridgectl runs with, and the writer in-process.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use clap::Parser as _;
use mongodb::bson::{Document, doc};
use testkit::args::WriterArgs;
use testkit::process::TempDir;
use testkit::{StackEnv, kafka, sqs, unique, wait_for};

use crate::console_proc::Console;

/// Fresh queue pair, topics, group and database, on `bootstrap`.
pub struct Pipeline {
    pub env: HashMap<String, String>,
    bin: String,
    _dir: TempDir,
}

impl Pipeline {
    /// `bin`: the bridgectl binary `bridgectl()` runs (a test's `CARGO_BIN_EXE_...`).
    pub async fn new(bin: &str, bootstrap: &str, max_receive_count: u32) -> Self {
        let client = sqs::client().await;
        let name = unique("pipe");
        let dlq = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .unwrap();
        let dlq_url = dlq.queue_url().unwrap().to_owned();
        let attrs = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        let arn = attrs.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
        let redrive =
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":{max_receive_count}}}"#);
        let q = client
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .unwrap();
        let (topic, dlq_topic) = (unique("telemetry"), unique("dlq"));
        kafka::create_topic_on(bootstrap, &topic, 6).await;
        kafka::create_topic_on(bootstrap, &dlq_topic, 1).await;
        let mut env: HashMap<String, String> = StackEnv::get()
            .vars()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for (k, v) in [
            ("SQS_QUEUE_URL", q.queue_url().unwrap().to_owned()),
            ("SQS_DLQ_URL", dlq_url),
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.to_owned()),
            ("KAFKA_TOPIC", topic),
            ("KAFKA_DLQ_TOPIC", dlq_topic),
            ("KAFKA_GROUP_ID", unique("writer")),
            ("MONGODB_DATABASE", unique("iot").replace('-', "_")),
            ("RUST_LOG", "error".to_owned()),
        ] {
            env.insert(k.to_owned(), v);
        }
        Pipeline {
            env,
            bin: bin.to_owned(),
            _dir: TempDir::new("pipe"),
        }
    }

    pub fn var(&self, k: &str) -> &str {
        &self.env[k]
    }

    /// Runs bridgectl; returns stdout, failing the test on a non-zero exit.
    pub fn bridgectl(&self, args: &[&str], extra_env: &[(&str, &str)]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&self.env)
            .envs(extra_env.iter().copied())
            .current_dir(testkit::workspace_root())
            .output()
            .expect("run bridgectl");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "bridgectl {args:?} failed: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// `bridgectl replay FILES` with 5 % invalid and 5 % duplicate messages (seeded when
    /// `seed` is given): the replay's JSON summary.
    pub fn replay_sample(&self, files: &str, seed: Option<u64>) -> serde_json::Value {
        let seed = seed.map(|s| s.to_string());
        let mut args = vec![
            "replay",
            files,
            "--invalid-ratio",
            "0.05",
            "--duplicate-ratio",
            "0.05",
            "--json",
            "--quiet",
        ];
        if let Some(seed) = &seed {
            args.extend(["--seed", seed]);
        }
        serde_json::from_str(self.bridgectl(&args, &[]).trim()).expect("replay's JSON summary")
    }

    /// `bridgectl console` on a free loopback port, refreshing every second, redrive allowed.
    pub fn console(&self) -> Console {
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1s",
            "--allow-redrive",
        ];
        Console::start(&self.bin, &self.env, &args)
    }

    /// The writer, in this process, on the pipeline's topic and database.
    pub fn start_writer(&self) -> InProcessWriter {
        let argv = WriterArgs::local(self.var("KAFKA_BOOTSTRAP_SERVERS"), self.var("MONGODB_URI"))
            .topic(self.var("KAFKA_TOPIC"))
            .dlq_topic(self.var("KAFKA_DLQ_TOPIC"))
            .group(self.var("KAFKA_GROUP_ID"))
            .database(self.var("MONGODB_DATABASE"))
            .set("--batch-linger-ms", 5)
            .argv();
        let cfg = kafka_to_mongo::Config::try_parse_from(argv).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            kafka_to_mongo::run(cfg, async {
                let _ = rx.await;
            })
            .await
            .expect("writer");
        });
        InProcessWriter { stop: tx, task }
    }

    pub async fn db(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(self.var("MONGODB_URI"))
            .await
            .unwrap()
            .database(self.var("MONGODB_DATABASE"))
    }

    pub async fn docs(&self) -> u64 {
        self.db()
            .await
            .collection::<Document>("telemetry")
            .count_documents(doc! {})
            .await
            .unwrap()
    }

    pub async fn device_total(&self) -> i64 {
        use futures::TryStreamExt as _;
        let devices: Vec<Document> = self
            .db()
            .await
            .collection::<Document>("devices")
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        devices.iter().map(|d| d.get_i64("count").unwrap()).sum()
    }

    pub async fn sqs_depth(&self, url_var: &str) -> (i64, i64) {
        let attrs = sqs::client()
            .await
            .get_queue_attributes()
            .queue_url(self.var(url_var))
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let a = attrs.attributes().unwrap();
        let n = |k: QueueAttributeName| a[&k].parse().unwrap();
        (
            n(QueueAttributeName::ApproximateNumberOfMessages),
            n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// At least `dead` dead letters (dead-lettering is at-least-once: SQS may deliver a
    /// message twice), then exactly `docs` documents, everything committed.
    pub async fn settled(&self, docs: u64, dead: i64) {
        let (topic, dlq, group, bootstrap) = (
            self.var("KAFKA_TOPIC"),
            self.var("KAFKA_DLQ_TOPIC"),
            self.var("KAFKA_GROUP_ID"),
            self.var("KAFKA_BOOTSTRAP_SERVERS"),
        );
        let deadline = Duration::from_secs(120);
        wait_for(&format!("{dead} dead letters"), deadline, || async {
            (kafka::committed_and_high(bootstrap, group, dlq).1 >= dead).then_some(())
        })
        .await;
        let telemetry = self.db().await.collection::<Document>("telemetry");
        testkit::writer::settled(&telemetry, docs, bootstrap, group, topic, deadline).await;
    }
}

/// The in-process writer: stopped (and waited for) before the servers it uses go,
/// so it never closes its consumer against a broker that is already gone.
pub struct InProcessWriter {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl InProcessWriter {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the writer stops within 60 s")
            .expect("the writer task");
    }
}
