//! Helpers for tests against the real local stack (`infra/local/stack up`).
//!
//! Every helper panics with a clear message when the stack is not up: a test of
//! Kafka, MongoDB or SQS must fail, never pass by skipping, when a server is missing.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod args;
pub mod fault_proxy;
pub mod kafka;
pub mod mongo;
pub mod podman;
pub mod process;
pub mod secure;
pub mod sqs;
pub mod writer;

/// The variables `infra/local/stack` wrote to its environment file.
#[derive(Debug, Clone)]
pub struct StackEnv(HashMap<String, String>);

impl StackEnv {
    /// Reads `$IOT_BRIDGE_STACK_ENV`, else `<workspace>/.stack/stack.env`. Once per test binary.
    pub fn get() -> &'static StackEnv {
        static ENV: OnceLock<StackEnv> = OnceLock::new();
        ENV.get_or_init(|| {
            let path = std::env::var_os("IOT_BRIDGE_STACK_ENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join(".stack/stack.env"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("the local stack is not up ({}: {e}); run `infra/local/stack up` (or `make test`)", path.display())
            });
            StackEnv(
                text.lines()
                    .filter_map(|l| l.strip_prefix("export "))
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            )
        })
    }

    pub fn var(&self, name: &str) -> &str {
        self.0.get(name).unwrap_or_else(|| {
            panic!("{name} is missing from the stack env file; rerun `infra/local/stack up`")
        })
    }

    pub fn kafka_bootstrap(&self) -> &str {
        self.var("KAFKA_BOOTSTRAP_SERVERS")
    }

    pub fn mongo_uri(&self) -> &str {
        self.var("MONGODB_URI")
    }

    pub fn aws_endpoint(&self) -> &str {
        self.var("AWS_ENDPOINT_URL")
    }

    /// Where SQS is served: `AWS_ENDPOINT_URL_SQS` (the stack's ministack), else `AWS_ENDPOINT_URL`.
    pub fn sqs_endpoint(&self) -> &str {
        self.0
            .get("AWS_ENDPOINT_URL_SQS")
            .map_or_else(|| self.aws_endpoint(), String::as_str)
    }

    /// All pairs, for a child process's environment.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// A name no other test (or earlier run) uses: `prefix-<pid>-<counter>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it returns `Some`, or panics naming `what` once `deadline` has passed.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
