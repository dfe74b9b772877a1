//! Faults the crash tests do not reach: a MongoDB connection that never answers,
//! a worker that outlives its grace and gets its partition back, a dead-letter
//! topic that cannot be written, and start-up while MongoDB is unreachable. Each
//! runs the real writer against real servers, with a fault proxy in between.

mod common;

use std::time::Duration;

use common::WRITER;
use testkit::fault_proxy::Mode;
use testkit::kafka;
use testkit::writer::{Setup, Writer, payloads};

#[tokio::test(flavor = "multi_thread")]
async fn a_black_holed_mongodb_connection_times_out_is_retried_and_reported_not_ready() {
    let s = Setup::on_stack(WRITER).await;
    let (proxy, uri) = s.proxied_mongo();
    let w = Writer::start(
        &s,
        "w",
        &[("MONGODB_URI", &uri), ("MONGODB_TIMEOUT_MS", "2000")],
    );
    w.wait_ready().await;
    let msgs = payloads(1_000);
    s.produce(&msgs[..500]).await;
    s.settled(500, Duration::from_secs(60)).await;

    // The server is "up" but never answers: without a deadline a write waits forever.
    proxy.set(Mode::BlackHole);
    s.produce(&msgs[500..]).await;
    w.wait_metric("WriteRetries", 2.0).await;
    let (code, why) = w.get("/readyz").expect("health answers");
    assert_eq!(code, 503, "not ready while MongoDB does not answer");
    assert!(why.contains("MongoDB"), "the reason names MongoDB: {why}");
    assert_eq!(
        w.get("/healthz").map(|r| r.0),
        Some(200),
        "retrying an outage is not hung: restarting the task would not help"
    );
    assert_eq!(
        s.committed_and_high(),
        (500, 1_000),
        "nothing unwritten is committed"
    );

    proxy.set(Mode::Pass);
    s.settled(1_000, Duration::from_secs(120)).await;
    assert_eq!(s.device_total().await, 1_000);
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_revoked_past_the_grace_and_assigned_back_keeps_flowing_and_loses_nothing() {
    let s = Setup::on_stack(WRITER).await;
    let (proxy, uri) = s.proxied_mongo();
    let grace = [("SHUTDOWN_GRACE_MS", "500")];
    let a = Writer::start(&s, "a", &[grace[0], ("MONGODB_URI", &uri)]);
    a.wait_ready().await;
    let msgs = payloads(3_000);
    s.produce(&msgs[..1_000]).await;
    s.settled(1_000, Duration::from_secs(60)).await;

    // A's writes hang, so its workers cannot finish within the grace of the rebalances below.
    proxy.set(Mode::BlackHole);
    s.produce(&msgs[1_000..2_000]).await;
    a.wait_metric("MessagesConsumed", 1_001.0).await;
    let mut b = Writer::start(&s, "b", &grace);
    testkit::wait_for("b assigned partitions", Duration::from_secs(60), || async {
        b.last_assigned().filter(|p| !p.is_empty())
    })
    .await;
    testkit::wait_for(
        "a gave up a batch at the grace",
        Duration::from_secs(30),
        || async { (a.log_count("grace") > 0).then_some(()) },
    )
    .await;
    assert!(b.sigterm().success(), "{}", b.log_text());
    testkit::wait_for(
        "a owns all six partitions again",
        Duration::from_secs(60),
        || async { (a.last_assigned()?.len() == 6).then_some(()) },
    )
    .await;

    // Every partition must flow again in A, and nothing the old workers held may be skipped.
    proxy.set(Mode::Pass);
    s.produce(&msgs[2_000..]).await;
    s.settled(3_000, Duration::from_secs(120)).await;
    assert_eq!(s.device_total().await, 3_000, "0 lost, 0 double-counted");
    assert_eq!(a.get("/healthz").map(|r| r.0), Some(200));
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_dead_letter_topic_holds_only_its_partitions_and_recovers() {
    let s = Setup::on_stack(WRITER).await;
    // Two partitions each end a batch with one invalid message.
    let msgs = payloads(2_400);
    for (p, chunk) in msgs[..800].chunks(400).enumerate() {
        kafka::produce_telemetry_to(&s.bootstrap, &s.topic, Some(p as i32), chunk).await;
        let bad = vec![("d".to_owned(), b"not json".to_vec())];
        kafka::produce_raw_to(&s.bootstrap, &s.topic, Some(p as i32), &bad).await;
    }
    // The broker creates missing topics on first use, so "unwritable" is a name it
    // refuses (as a deleted topic with creation off, or a denied one, would be).
    let mut w = Writer::start(
        &s,
        "w",
        &[
            ("KAFKA_DLQ_TOPIC", "not a valid topic name!"),
            ("BATCH_SIZE", "500"),
            ("IN_FLIGHT_MESSAGES", "1000"),
            ("DLQ_TIMEOUT_MS", "2000"),
        ],
    );
    w.wait_ready().await;
    // The two stuck batches must not starve the other partitions of room.
    for p in 2..6 {
        let chunk = &msgs[800 + (p - 2) * 400..800 + (p - 1) * 400];
        kafka::produce_telemetry_to(&s.bootstrap, &s.topic, Some(p as i32), chunk).await;
    }
    testkit::wait_for(
        "every valid message stored while the DLQ is unwritable",
        Duration::from_secs(90),
        || async { (s.count().await == 2_400).then_some(()) },
    )
    .await;
    w.wait_metric("DeadLetterFailures", 1.0).await;
    testkit::wait_for(
        "partitions 2-5 committed",
        Duration::from_secs(30),
        || async { (s.committed_and_high().0 >= 1_600).then_some(()) },
    )
    .await;
    let (committed, high) = s.committed_and_high();
    assert_eq!(high, 2_402);
    assert!(
        committed <= 2_400,
        "nothing past an undelivered dead letter is committed: {committed}"
    );
    let (code, why) = w.get("/readyz").expect("health answers");
    assert_eq!(code, 503);
    assert!(why.contains("dead-letter"), "{why}");
    assert!(
        w.sigterm().success(),
        "a stop ends the retries: {}",
        w.log_text()
    );

    // Fixed: the next writer dead-letters both and commits everything, storing nothing twice.
    let fixed = s.writer("fixed");
    testkit::wait_for("all committed", Duration::from_secs(120), || async {
        let (c, h) = s.committed_and_high();
        (c == h).then_some(())
    })
    .await;
    assert_eq!(s.count().await, 2_400);
    assert_eq!(s.device_total().await, 2_400);
    assert_eq!(kafka::read_n(&s.dlq, 2).await.len(), 2);
    fixed.wait_metric("Duplicates", 800.0).await;
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_health_server_answers_not_ready_while_start_up_waits_for_mongodb() {
    let s = Setup::on_stack(WRITER).await;
    let (proxy, uri) = s.proxied_mongo();
    proxy.set(Mode::BlackHole);
    let w = Writer::start(
        &s,
        "w",
        &[
            ("MONGODB_URI", &uri),
            ("MONGODB_TIMEOUT_MS", "1000"),
            ("RETENTION_DAYS", "30"),
        ],
    );
    let (code, why) = testkit::wait_for(
        "the health server answers during start-up",
        Duration::from_secs(30),
        || async { w.get("/readyz") },
    )
    .await;
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("starting"), "{why}");
    assert_eq!(
        w.get("/healthz").map(|r| r.0),
        Some(200),
        "starting is alive"
    );

    proxy.set(Mode::Pass);
    w.wait_ready().await;
    s.produce(&payloads(100)).await;
    s.settled(100, Duration::from_secs(60)).await;
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_whose_state_mongodb_refuses_is_dead_lettered_and_the_others_are_stored() {
    let s = Setup::on_stack(WRITER).await;
    let msgs = payloads(400);
    let victim = msgs[0]["deviceId"].as_str().unwrap().to_owned();
    let theirs = msgs
        .iter()
        .filter(|m| m["deviceId"] == victim.as_str())
        .count() as u64;
    // A `count` someone wrote as text: `$inc` on it fails, every time (TypeMismatch).
    let devices = s
        .db()
        .await
        .collection::<mongodb::bson::Document>("devices");
    devices
        .insert_one(mongodb::bson::doc! {"_id": &victim, "count": "many"})
        .await
        .unwrap();
    let w = s.writer("w");
    w.wait_ready().await;
    s.produce(&msgs).await;
    testkit::wait_for("all committed", Duration::from_secs(120), || async {
        let (c, h) = s.committed_and_high();
        (c == h && h == 400).then_some(())
    })
    .await;
    assert_eq!(
        s.count().await,
        400 - theirs,
        "the other devices' messages are stored"
    );
    let dead = kafka::read_n(&s.dlq, theirs as usize).await;
    for m in &dead {
        let reason = kafka::header(m, telemetry::envelope::header::DLQ_REASON).unwrap();
        assert!(
            reason.contains("device state") && reason.contains(&victim),
            "{reason}"
        );
    }
    assert_eq!(kafka::record_count(&s.dlq), theirs as i64, "each once");
    let others: i64 = s
        .devices()
        .await
        .iter()
        .filter(|(id, _)| **id != victim)
        .map(|(_, d)| d.get_i64("count").unwrap())
        .sum();
    assert_eq!(others as u64, 400 - theirs, "counts match what is stored");
    w.wait_metric("DeviceStateRefused", 1.0).await;
    s.drop_db().await;
}

/// A private broker behind a fault proxy, topics on it, a writer, and 120 large
/// records (mostly record bytes, so a flipped byte fails a batch's CRC) of which the
/// first 20 are already stored.
async fn behind_a_corrupting_proxy(
    dir: &testkit::process::TempDir,
) -> (
    testkit::process::Server,
    testkit::fault_proxy::FaultProxy,
    Setup,
    Writer,
    Vec<serde_json::Map<String, serde_json::Value>>,
) {
    use testkit::fault_proxy::FaultProxy;
    use testkit::process::{Server, free_port};
    let proxy_port = free_port();
    let mut broker = Server::nisshi_behind(dir.path(), proxy_port);
    broker.start();
    let proxy = FaultProxy::start_on(proxy_port, broker.address().parse().unwrap());
    let s = Setup::on(
        WRITER,
        &proxy.addr().to_string(),
        testkit::StackEnv::get().mongo_uri(),
    )
    .await;
    let w = s.writer("w");
    w.wait_ready().await;
    let pad = "p".repeat(200);
    let mut msgs = payloads(121);
    for m in &mut msgs[..120] {
        let readings = m["readings"].as_object_mut().unwrap();
        for i in 0..40 {
            readings.insert(format!("pad{i}"), serde_json::json!(pad));
        }
    }
    kafka::produce_telemetry_to(&s.bootstrap, &s.topic, Some(0), &msgs[..20]).await;
    s.settled(20, Duration::from_secs(60)).await;
    (broker, proxy, s, w, msgs)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_batch_corrupted_in_transit_is_read_again_and_nothing_is_skipped() {
    let dir = testkit::process::TempDir::new("corrupt-once");
    let (_broker, proxy, s, _w, msgs) = behind_a_corrupting_proxy(&dir).await;
    proxy.corrupt_next();
    kafka::produce_telemetry_to(&s.bootstrap, &s.topic, Some(0), &msgs[20..120]).await;
    // librdkafka reports the CRC failure and reads on into the broken bytes; the
    // worker notices the silence with records waiting and reads again.
    s.settled(120, Duration::from_secs(120)).await;
    assert!(proxy.corrupted(), "the fault happened");
    assert_eq!(
        kafka::record_count(&s.dlq),
        0,
        "nothing was unreadable the second time"
    );
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_record_batch_is_dead_lettered_as_an_unreadable_range_never_skipped_silently() {
    let dir = testkit::process::TempDir::new("corrupt-always");
    let (_broker, proxy, s, w, msgs) = behind_a_corrupting_proxy(&dir).await;
    // Every read of the large batch fails; the small record after it reads fine.
    proxy.corrupt_always(true);
    kafka::produce_telemetry_to(&s.bootstrap, &s.topic, Some(0), &msgs[20..120]).await;
    kafka::produce_telemetry_to(&s.bootstrap, &s.topic, Some(0), &msgs[120..]).await;
    testkit::wait_for("everything committed", Duration::from_secs(120), || async {
        let (c, h) = s.committed_and_high();
        (c == h && h == 121).then_some(())
    })
    .await;
    proxy.corrupt_always(false);
    let stored = s.count().await;
    let unread = 121 - stored;
    assert!(unread > 0, "the corrupt batch could not be read");
    let dead = kafka::read_all_on(&s.bootstrap, &s.dlq).await;
    assert_eq!(dead.len(), 1, "one record for the range");
    let header = |name| kafka::header(&dead[0], name).unwrap();
    use telemetry::envelope::header as h;
    assert_eq!(header(h::DLQ_KIND), "unreadable");
    let reason = header(h::DLQ_REASON);
    assert!(reason.contains("of partition 0"), "{reason}");
    let from: u64 = header(h::ORIGINAL_OFFSET).parse().unwrap();
    assert!(
        reason.contains(&format!("offsets {from}..{}", from + unread - 1)),
        "the range is exactly what was not stored ({unread}): {reason}"
    );
    w.wait_metric("UnreadableOffsets", unread as f64).await;
    s.drop_db().await;
}
