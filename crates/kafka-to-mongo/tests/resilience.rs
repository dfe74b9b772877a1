//! Crashes and outages: MongoDB stopped, the writer SIGKILLed or SIGTERMed, the
//! broker restarted, a second instance joining and leaving. Always 0 lost, 0 duplicated.

mod common;

use std::time::Duration;

use common::WRITER;
use testkit::StackEnv;
use testkit::process::{Server, TempDir};
use testkit::writer::{Setup, Writer, payloads};

async fn wait_count_at_least(s: &Setup, n: u64) {
    testkit::wait_for(
        &format!("at least {n} documents"),
        Duration::from_secs(60),
        || async { (s.count().await >= n).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mongodb_outage_commits_nothing_unwritten_and_loses_nothing() {
    let dir = TempDir::new("mongo-outage");
    let mut mongo = Server::secantus(dir.path());
    mongo.start();
    let uri = format!("mongodb://{}/?directConnection=true", mongo.address());
    let s = Setup::on(WRITER, StackEnv::get().kafka_bootstrap(), &uri).await;
    let writer = s.writer("w");
    writer.wait_ready().await;
    let msgs = payloads(3_000);
    s.produce(&msgs[..1_000]).await;
    s.settled(1_000, Duration::from_secs(60)).await;

    mongo.stop();
    s.produce(&msgs[1_000..]).await;
    writer.wait_metric("WriteRetries", 3.0).await;
    assert_eq!(
        writer.get("/readyz").map(|r| r.0),
        Some(503),
        "not ready while MongoDB is down"
    );
    assert_eq!(
        writer.get("/healthz").map(|r| r.0),
        Some(200),
        "still alive"
    );
    let (committed, high) = s.committed_and_high();
    assert_eq!(
        (committed, high),
        (1_000, 3_000),
        "nothing past the stored 1,000 is committed"
    );

    mongo.start();
    s.settled(3_000, Duration::from_secs(120)).await;
    assert_eq!(s.device_total().await, 3_000, "0 lost, 0 double-counted");
    testkit::wait_for("ready again", Duration::from_secs(30), || async {
        matches!(writer.get("/readyz"), Some((200, _))).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkilled_writer_restarts_with_nothing_lost_or_duplicated() {
    let s = Setup::on_stack(WRITER).await;
    let msgs = payloads(6_000);
    s.produce(&msgs).await;
    let mut first = Writer::start(&s, "first", &[("BATCH_SIZE", "100")]);
    wait_count_at_least(&s, 1_000).await;
    first.sigkill();
    let stored_at_crash = s.count().await;
    assert!(
        stored_at_crash < 6_000,
        "the crash must happen mid-stream ({stored_at_crash})"
    );

    let second = s.writer("second");
    s.settled(6_000, Duration::from_secs(120)).await;
    assert_eq!(s.device_total().await, 6_000);
    second
        .wait_metric("DocumentsInserted", (6_000 - stored_at_crash) as f64)
        .await;
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_batch_exits_0_with_everything_written_committed() {
    let s = Setup::on_stack(WRITER).await;
    s.produce(&payloads(6_000)).await;
    let mut first = Writer::start(&s, "first", &[("BATCH_SIZE", "100")]);
    wait_count_at_least(&s, 500).await;
    let status = first.sigterm();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        first.log_text()
    );
    let stored = s.count().await;
    let (committed, _) = s.committed_and_high();
    assert_eq!(
        committed as u64, stored,
        "every written message is committed, and nothing else"
    );
    assert!(stored < 6_000, "SIGTERM came mid-stream");
    // The exit waited for the broker to confirm, not for a deadline (rust-rdkafka 0.39 never
    // calls the commit callback for an async commit: rust-rdkafka issue 856).
    let log = first.log_text();
    assert!(
        log.contains("final commit confirmed by the broker"),
        "{log}"
    );

    let second = s.writer("second");
    s.settled(6_000, Duration::from_secs(120)).await;
    second
        .wait_metric("DocumentsInserted", (6_000 - stored) as f64)
        .await;
    assert_eq!(
        second
            .metric_totals()
            .get("Duplicates")
            .copied()
            .unwrap_or(0.0),
        0.0,
        "nothing is re-stored"
    );
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let dir = TempDir::new("broker-restart");
    let mut broker = Server::nisshi(dir.path());
    broker.start();
    let s = Setup::on(WRITER, &broker.address(), StackEnv::get().mongo_uri()).await;
    let writer = s.writer("w");
    writer.wait_ready().await;
    let msgs = payloads(4_000);
    s.produce(&msgs[..2_000]).await;
    wait_count_at_least(&s, 200).await;
    broker.restart();
    s.produce(&msgs[2_000..]).await;
    s.settled(4_000, Duration::from_secs(120)).await;
    assert_eq!(s.device_total().await, 4_000);
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_writers_split_the_partitions_and_one_takes_over_when_the_other_leaves() {
    let s = Setup::on_stack(WRITER).await;
    let mut a = s.writer("a");
    a.wait_ready().await;
    let b = s.writer("b");
    b.wait_ready().await;
    testkit::wait_for(
        "both writers assigned partitions",
        Duration::from_secs(30),
        || async {
            let assigned = |w: &Writer| {
                w.log_text()
                    .lines()
                    .rev()
                    .find(|l| l.contains("partitions assigned"))
                    .is_some_and(|l| !l.contains("[]"))
            };
            (assigned(&a) && assigned(&b)).then_some(())
        },
    )
    .await;
    let msgs = payloads(6_000);
    s.produce(&msgs[..3_000]).await;
    s.settled(3_000, Duration::from_secs(120)).await;
    // The metric lines are flushed on an interval, after the documents are visible.
    let inserted = |w: &Writer| {
        w.metric_totals()
            .get("DocumentsInserted")
            .copied()
            .unwrap_or(0.0)
    };
    testkit::wait_for(
        "both writers' metrics flushed",
        Duration::from_secs(60),
        || async { (inserted(&a) + inserted(&b) >= 3_000.0).then_some(()) },
    )
    .await;
    let split = (inserted(&a), inserted(&b));
    assert_eq!(split.0 + split.1, 3_000.0, "{split:?}");
    assert!(
        split.0 > 0.0 && split.1 > 0.0,
        "both writers stored some: {split:?}"
    );

    assert!(a.sigterm().success());
    s.produce(&msgs[3_000..]).await;
    s.settled(6_000, Duration::from_secs(120)).await;
    b.wait_metric("DocumentsInserted", 6_000.0 - split.0).await;
    assert_eq!(s.device_total().await, 6_000);
    s.drop_db().await;
}
