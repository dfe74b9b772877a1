//! One writer process: started with the setup's topics and database, probed over its
//! health port, read through its log and EMF lines, stopped or killed.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Setup;
use crate::process::free_port;

pub struct Writer {
    child: Option<Child>,
    pub name: String,
    pub health_port: u16,
    pub stdout: PathBuf,
    pub log: PathBuf,
}

impl Writer {
    /// Starts `s.writer_bin` with the setup's settings; `extra` environment variables
    /// add to them or override them.
    pub fn start(s: &Setup, name: &str, extra: &[(&str, &str)]) -> Self {
        let health_port = free_port();
        let stdout = s.dir.path().join(format!("{name}.stdout"));
        let log = s.dir.path().join(format!("{name}.log"));
        let mut cmd = Command::new(&s.writer_bin);
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
            .stdout(std::fs::File::create(&stdout).expect("writer stdout file"))
            .stderr(std::fs::File::create(&log).expect("writer log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start the writer {}: {e}", s.writer_bin.display()));
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
            if let Some(status) = child.try_wait().expect("writer status") {
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

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

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
        crate::wait_for(
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
                .expect("run kill")
                .success(),
            "kill {sig} {} ({pid})",
            self.name
        );
    }

    /// SIGTERM and the exit status (within 30 s).
    pub fn sigterm(&mut self) -> ExitStatus {
        self.signal("-TERM");
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("writer status") {
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

    /// SIGKILL: a crash, with no chance to flush or commit.
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
