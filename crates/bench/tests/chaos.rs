//! The chaos driver short (`bench::chaos::Plan::short`), in both collection types;
//! `make chaos` runs it long. The audit must be exact: nothing lost, nothing
//! duplicated, nothing extra, every invalid message dead-lettered, every device's
//! count and `last` right, no fault that stalled the writer.

use std::path::{Path, PathBuf};

use bench::chaos::{Plan, run};
use bridge_common::collection::CollectionType;

/// The debug writer beside this test: `<target>/debug/deps/chaos-<hash>` here, the
/// writer at `<target>/debug/kafka-to-mongo`. `cargo test --workspace` builds it
/// (kafka-to-mongo's own integration tests need it) before any test runs.
fn writer_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps")
        .join("kafka-to-mongo");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo test --workspace` builds it; with `-p bench` alone, run `cargo build -p kafka-to-mongo` first",
        bin.display()
    );
    bin
}

async fn chaos(mode: CollectionType) {
    let outcome = run(&Plan::short(mode, writer_bin())).await;
    assert!(outcome.ok, "the chaos audit failed: {}", outcome.result);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_fault_run_stores_every_valid_message_once_and_dead_letters_every_invalid_one() {
    chaos(CollectionType::Regular).await;
}

/// The same faults into a time-series collection (no unique index: the writer's
/// own check keeps every measurement once).
#[tokio::test(flavor = "multi_thread")]
async fn the_same_faults_into_a_time_series_collection_store_every_message_once() {
    chaos(CollectionType::Timeseries).await;
}
