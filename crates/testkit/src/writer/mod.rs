//! The writer (`kafka-to-mongo`) as a real process on the stack or on private
//! servers, each test with its own topics, group and database. The binary is the
//! caller's: a package's own tests pass `env!("CARGO_BIN_EXE_kafka-to-mongo")`,
//! the bench a release build.

mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::{Collection, Database};
use serde_json::{Map, Value};
use telemetry::sample::{DEFAULT_START_MS, Generator};

pub use process::Writer;

use crate::fault_proxy::FaultProxy;
use crate::process::TempDir;
use crate::{StackEnv, kafka, unique};

/// Fresh topics, group and database for one test, and the writer binary it runs.
pub struct Setup {
    pub writer_bin: PathBuf,
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
    pub async fn on_stack(writer_bin: impl Into<PathBuf>) -> Self {
        let env = StackEnv::get();
        Self::on(writer_bin, env.kafka_bootstrap(), env.mongo_uri()).await
    }

    pub async fn on(writer_bin: impl Into<PathBuf>, bootstrap: &str, mongo_uri: &str) -> Self {
        Self::with_partitions(writer_bin, bootstrap, mongo_uri, 6).await
    }

    pub async fn with_partitions(
        writer_bin: impl Into<PathBuf>,
        bootstrap: &str,
        mongo_uri: &str,
        partitions: i32,
    ) -> Self {
        let s = Setup {
            writer_bin: writer_bin.into(),
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

    pub async fn db(&self) -> Database {
        mongodb::Client::with_uri_str(&self.mongo_uri)
            .await
            .unwrap_or_else(|e| panic!("connect to MongoDB at {}: {e}", self.mongo_uri))
            .database(&self.database)
    }

    /// Drops the test's database (other tests' data is in theirs).
    pub async fn drop_db(&self) {
        self.db()
            .await
            .drop()
            .await
            .expect("drop the test database");
    }

    pub async fn count(&self) -> u64 {
        self.db()
            .await
            .collection::<Document>("telemetry")
            .count_documents(doc! {})
            .await
            .expect("count telemetry")
    }

    pub async fn devices(&self) -> HashMap<String, Document> {
        use futures::TryStreamExt as _;
        let docs: Vec<Document> = self
            .db()
            .await
            .collection::<Document>("devices")
            .find(doc! {})
            .await
            .expect("find devices")
            .try_collect()
            .await
            .expect("read devices");
        docs.into_iter()
            .map(|d| (d.get_str("_id").expect("device _id").to_owned(), d))
            .collect()
    }

    /// The sum of every device's `count`.
    pub async fn device_total(&self) -> i64 {
        self.devices()
            .await
            .values()
            .map(|d| d.get_i64("count").expect("device count"))
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
        let telemetry = self.db().await.collection::<Document>("telemetry");
        settled(
            &telemetry,
            n,
            &self.bootstrap,
            &self.group,
            &self.topic,
            deadline,
        )
        .await;
    }

    /// A fault proxy in front of this setup's MongoDB, and the URI that goes through it.
    pub fn proxied_mongo(&self) -> (FaultProxy, String) {
        let proxy = FaultProxy::start(mongo_address(&self.mongo_uri));
        let uri = format!("mongodb://{}/?directConnection=true", proxy.addr());
        (proxy, uri)
    }
}

/// Waits until `docs` holds exactly `n` documents and `group` has committed every
/// record of `topic`: the writer has nothing left to do.
pub async fn settled(
    docs: &Collection<Document>,
    n: u64,
    bootstrap: &str,
    group: &str,
    topic: &str,
    deadline: Duration,
) {
    crate::wait_for(
        &format!("{n} documents stored and all offsets committed"),
        deadline,
        || async {
            let count = docs
                .count_documents(doc! {})
                .await
                .expect("count documents");
            let (committed, high) = kafka::committed_and_high(bootstrap, group, topic);
            (count == n && committed == high).then_some(())
        },
    )
    .await;
}

/// `count` device payloads from the sample generator (the first 1,200 are events/iot's).
pub fn payloads(count: usize) -> Vec<Map<String, Value>> {
    Generator::new(20, 1, DEFAULT_START_MS)
        .take(count)
        .collect()
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
