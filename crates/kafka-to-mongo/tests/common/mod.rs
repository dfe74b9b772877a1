//! The writer as a real process, on the stack (or private servers), with its own topic, group and database.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};
use serde_json::{Map, Value};
use telemetry::sample::{DEFAULT_START_MS, Generator};
use testkit::process::{TempDir, free_port};
use testkit::{StackEnv, kafka, unique};

pub struct Setup {
    pub bootstrap: String,
    pub mongo_uri: String,
    pub topic: String,
    pub dlq: String,
    pub group: String,
    pub database: String,
    pub dir: TempDir,
}

impl Setup {
    /// Fresh topics (6 partitions), group and database on the shared stack.
    pub async fn on_stack() -> Self {
        let env = StackEnv::get();
        Self::on(env.kafka_bootstrap(), env.mongo_uri()).await
    }

    pub async fn on(bootstrap: &str, mongo_uri: &str) -> Self {
        Self::with_partitions(bootstrap, mongo_uri, 6).await
    }

    pub async fn with_partitions(bootstrap: &str, mongo_uri: &str, partitions: i32) -> Self {
        let s = Setup {
            bootstrap: bootstrap.to_owned(),
            mongo_uri: mongo_uri.to_owned(),
            topic: unique("telemetry"),
            dlq: unique("dlq"),
            group: unique("writer"),
            database: unique("iot").replace('-', "_"),
            dir: TempDir::new("writer"),
        };
        kafka::create_topic_on(bootstrap, &s.topic, partitions).await;
        kafka::create_topic_on(bootstrap, &s.dlq, 1).await;
        s
    }

    pub async fn db(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.mongo_uri)
            .await
            .unwrap()
            .database(&self.database)
    }

    pub async fn count(&self) -> u64 {
        self.db()
            .await
            .collection::<Document>("telemetry")
            .count_documents(doc! {})
            .await
            .unwrap()
    }

    pub async fn devices(&self) -> HashMap<String, Document> {
        use futures::TryStreamExt as _;
        let docs: Vec<Document> = self
            .db()
            .await
            .collection::<Document>("devices")
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        docs.into_iter()
            .map(|d| (d.get_str("_id").unwrap().to_owned(), d))
            .collect()
    }

    /// The sum of every device's `count`.
    pub async fn device_total(&self) -> i64 {
        self.devices()
            .await
            .values()
            .map(|d| d.get_i64("count").unwrap())
            .sum()
    }

    pub async fn produce(&self, payloads: &[Map<String, Value>]) {
        kafka::produce_telemetry(&self.bootstrap, &self.topic, payloads).await;
    }

    /// (sum of committed offsets of the group, sum of high watermarks) on the telemetry topic.
    pub fn committed_and_high(&self) -> (i64, i64) {
        kafka::committed_and_high(&self.bootstrap, &self.group, &self.topic)
    }

    pub fn writer(&self, name: &str) -> Writer {
        Writer::start(self, name, &[])
    }

    /// Waits until the collection holds `n` documents and every offset is committed.
    pub async fn settled(&self, n: u64, deadline: Duration) {
        testkit::wait_for(
            &format!("{n} documents stored and all offsets committed"),
            deadline,
            || async {
                let count = self.count().await;
                let (committed, high) = self.committed_and_high();
                (count == n && committed == high).then_some(())
            },
        )
        .await;
    }
}

/// `count` device payloads from the sample generator (the first 1,200 are events/iot's).
pub fn payloads(count: usize) -> Vec<Map<String, Value>> {
    Generator::new(20, 1, DEFAULT_START_MS)
        .take(count)
        .collect()
}

pub struct Writer {
    child: Option<Child>,
    pub name: String,
    pub health_port: u16,
    pub stdout: PathBuf,
    pub log: PathBuf,
}

impl Writer {
    pub fn start(s: &Setup, name: &str, extra: &[(&str, &str)]) -> Self {
        let health_port = free_port();
        let stdout = s.dir.path().join(format!("{name}.stdout"));
        let log = s.dir.path().join(format!("{name}.log"));
        // IOT_BRIDGE_WRITER_BIN runs another build (make chaos: the release one).
        let bin = std::env::var_os("IOT_BRIDGE_WRITER_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_kafka-to-mongo").into());
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("KAFKA_BOOTSTRAP_SERVERS", &s.bootstrap)
            .env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
            .env("BRIDGE_LOCAL_MODE", "1")
            .env("KAFKA_TOPIC", &s.topic)
            .env("KAFKA_DLQ_TOPIC", &s.dlq)
            .env("KAFKA_GROUP_ID", &s.group)
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("MONGODB_URI", &s.mongo_uri)
            .env("MONGODB_DATABASE", &s.database)
            .env("HEALTH_BIND", "127.0.0.1")
            .env("HEALTH_PORT", health_port.to_string())
            .env("METRICS_INTERVAL_S", "1")
            .env("RETRY_MAX_BACKOFF_MS", "1000")
            .env("SHUTDOWN_GRACE_MS", "10000");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kafka-to-mongo");
        Writer {
            child: Some(child),
            name: name.to_owned(),
            health_port,
            stdout,
            log,
        }
    }

    /// Waits for the process to exit (within `deadline`): its status.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "{} still running after {deadline:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET a health path: (status code, body), or None when nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.health_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.split_whitespace().nth(1)?.parse().ok()?;
        Some((
            code,
            out.rsplit("\r\n\r\n").next().unwrap_or_default().to_owned(),
        ))
    }

    pub async fn wait_ready(&self) {
        let deadline = Duration::from_secs(30);
        let start = Instant::now();
        loop {
            if matches!(self.get("/readyz"), Some((200, _))) {
                return;
            }
            assert!(
                start.elapsed() < deadline,
                "{} not ready within 30 s; log:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sums of every EMF metric the writer printed so far (its lines carry deltas).
    pub fn metric_totals(&self) -> HashMap<String, f64> {
        let mut totals = HashMap::new();
        for line in std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
        {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if v.get("Partition").is_some() {
                continue;
            }
            for m in v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let name = m["Name"].as_str().unwrap_or_default();
                if let Some(x) = v[name].as_f64() {
                    *totals.entry(name.to_owned()).or_insert(0.0) += x;
                }
            }
        }
        totals
    }

    pub async fn wait_metric(&self, name: &str, at_least: f64) {
        testkit::wait_for(
            &format!("{} metric {name} >= {at_least}", self.name),
            Duration::from_secs(60),
            || async {
                (self.metric_totals().get(name).copied().unwrap_or(0.0) >= at_least).then_some(())
            },
        )
        .await;
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        assert!(
            Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGTERM and the exit status (within 30 s).
    pub fn sigterm(&mut self) -> ExitStatus {
        self.signal("-TERM");
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} did not exit within 30 s of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory (VmHWM) in MB, while it runs.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }

    pub fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// Drops the test's database (other tests' data is in theirs).
pub async fn drop_db(s: &Setup) {
    s.db().await.drop().await.unwrap();
}

/// The address of the MongoDB server in `uri` (`mongodb://HOST:PORT/...`), for a fault proxy.
pub fn mongo_address(uri: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs as _;
    let hosts = uri
        .split("://")
        .nth(1)
        .and_then(|r| r.split(['/', '?']).next())
        .expect("host in the MongoDB URI");
    hosts
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("resolve {hosts}"))
}

/// A fault proxy in front of the stack's MongoDB, and the URI that goes through it.
pub fn proxied_mongo(s: &Setup) -> (testkit::fault_proxy::FaultProxy, String) {
    let proxy = testkit::fault_proxy::FaultProxy::start(mongo_address(&s.mongo_uri));
    let uri = format!("mongodb://{}/?directConnection=true", proxy.addr());
    (proxy, uri)
}

impl Writer {
    /// The partitions of the writer's last "partitions assigned" log line.
    pub fn last_assigned(&self) -> Option<Vec<i32>> {
        let text = self.log_text();
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains("partitions assigned"))?;
        let v: Value = serde_json::from_str(line).ok()?;
        let list = v["fields"]["assigned"].as_str()?;
        Some(
            list.trim_matches(['[', ']'])
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect(),
        )
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}
