//! Exactly once into a time-series collection, on the real stack: replays, the
//! crash point between the insert and the device-state transaction, a zombie
//! writer, partitions added under a running writer, and what MongoDB's rules
//! forbid (no time-series write inside a transaction).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_common::collection::Bucketing;
use common::WRITER;
use futures::TryStreamExt as _;
use kafka_to_mongo::error::StoreError;
use kafka_to_mongo::store::Store;
use kafka_to_mongo::timeseries::plan::Provenance;
use kafka_to_mongo::timeseries::{self, Attempts, Lease, TimeSeries};
use mongodb::bson::{Document, doc};
use rdkafka::Message as _;
use telemetry::document::{Layout, Prepared};
use testkit::writer::{Setup, Writer, payloads};
use testkit::{StackEnv, kafka};

const TS: (&str, &str) = ("MONGODB_COLLECTION_TYPE", "timeseries");
/// How long a writer may take to store a test's measurements and commit them.
const SETTLE: Duration = Duration::from_secs(180);
const SECONDS: Bucketing = Bucketing::Granularity(bridge_common::collection::Granularity::Seconds);

fn ts_writer(s: &Setup, name: &str, extra: &[(&str, &str)]) -> Writer {
    let mut env = vec![TS];
    env.extend_from_slice(extra);
    Writer::start(s, name, &env)
}

/// (measurements, distinct idempotency keys) in the time-series collection.
async fn measurements(s: &Setup) -> (u64, u64) {
    let telemetry = s.db().await.collection::<Document>("telemetry");
    let total = telemetry.count_documents(doc! {}).await.unwrap();
    let distinct: Vec<Document> = telemetry
        .aggregate([doc! {"$group": {"_id": "$_id"}}, doc! {"$count": "n"}])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let distinct = distinct
        .first()
        .map_or(0, |d| d.get_i32("n").unwrap() as u64);
    (total, distinct)
}

/// Each device's `count` equals its distinct keys (its measurements, when none is
/// stored twice), and they add up to `total`.
async fn counts_exact(s: &Setup, total: i64) {
    let per_device: Vec<Document> = s
        .db()
        .await
        .collection::<Document>("telemetry")
        .aggregate([
            doc! {"$group": {"_id": {"d": "$source.deviceId", "k": "$_id"}}},
            doc! {"$group": {"_id": "$_id.d", "n": {"$sum": 1}}},
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let devices = s.devices().await;
    for d in &per_device {
        let id = d.get_str("_id").unwrap();
        let n = i64::from(d.get_i32("n").unwrap());
        assert_eq!(devices[id].get_i64("count").unwrap(), n, "{id}");
    }
    assert_eq!(s.device_total().await, total);
}

/// A time-series store on the setup's database, as a writer holds it.
async fn store_on(s: &Setup, client: mongodb::Client) -> TimeSeries {
    let store = Store::from_client(client, &s.database, "telemetry", "devices");
    store.ensure_devices().await.unwrap();
    let ts = TimeSeries::new(store, "telemetry", "writer_partitions", &s.topic);
    ts.ensure(SECONDS, None).await.unwrap();
    ts
}

async fn client() -> mongodb::Client {
    mongodb::Client::with_uri_str(StackEnv::get().mongo_uri())
        .await
        .unwrap()
}

/// What a writer holding `lease` stores for `records` ((offset, value) of its partition).
fn prepared(records: &[(i64, Vec<u8>)], lease: &Lease) -> Vec<Prepared> {
    let now = chrono::Utc::now();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (offset, value) in records {
        let (key, t) = telemetry::accept(value, now).unwrap();
        if !seen.insert(key.clone()) {
            continue;
        }
        let mut p = Prepared::new_in(Layout::TimeSeries, key, &t, now).unwrap();
        let from = Provenance {
            partition: lease.owner.partition,
            offset: *offset,
            epoch: lease.owner.epoch,
        };
        timeseries::stamp(&mut p.doc, from);
        out.push(p);
    }
    out
}

/// The single-partition topic's records, in offset order.
async fn records(s: &Setup) -> Vec<(i64, Vec<u8>)> {
    kafka::read_all_on(&s.bootstrap, &s.topic)
        .await
        .iter()
        .map(|m| (m.offset(), m.payload().unwrap().to_vec()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_messages_and_their_replay_are_ten_thousand_measurements() {
    let s = Setup::on_stack(WRITER).await;
    let w = ts_writer(&s, "w", &[]);
    w.wait_ready().await;
    let msgs = payloads(10_000);
    s.produce(&msgs).await;
    s.settled(10_000, SETTLE).await;
    s.produce(&msgs).await;
    w.wait_metric("Duplicates", 10_000.0).await;
    s.settled(10_000, SETTLE).await;
    assert_eq!(measurements(&s).await, (10_000, 10_000));
    counts_exact(&s, 10_000).await;
    let m = w.metric_totals();
    assert_eq!(
        (m["DocumentsInserted"], m["Duplicates"]),
        (10_000.0, 10_000.0),
        "{m:?}"
    );

    let db = s.db().await;
    let entry = db
        .run_command(doc! {"listCollections": 1, "filter": {"name": "telemetry"}})
        .await
        .unwrap();
    let entry = &entry
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()[0];
    let entry = entry.as_document().unwrap();
    assert_eq!(entry.get_str("type").unwrap(), "timeseries");
    let one = db
        .collection::<Document>("telemetry")
        .find_one(doc! {"_id": "thermo-0001#seq:1"})
        .await
        .unwrap()
        .expect("stored under its idempotency key");
    assert_eq!(
        one.get_document("source")
            .unwrap()
            .get_str("deviceId")
            .unwrap(),
        "thermo-0001"
    );
    assert!(
        !one.contains_key("deviceId"),
        "the device id is in the metaField only"
    );
    let k = one.get_document("kafka").unwrap();
    assert!(
        k.get_i32("partition").is_ok() && k.get_i64("offset").is_ok() && k.get_i64("epoch").is_ok(),
        "{one}"
    );
    let indexes: Vec<String> = db
        .collection::<Document>("telemetry")
        .list_index_names()
        .await
        .unwrap();
    assert!(
        indexes.contains(&"source_deviceId_ts".to_owned()),
        "{indexes:?}"
    );
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_the_insert_and_the_device_state_counts_each_measurement_once() {
    let env = StackEnv::get();
    let s = Setup::with_partitions(WRITER, env.kafka_bootstrap(), env.mongo_uri(), 1).await;
    let msgs = payloads(600);
    let (first, second) = msgs.split_at(400);
    s.produce(first).await;
    let mut w1 = ts_writer(&s, "w1", &[]);
    s.settled(400, SETTLE).await;
    assert!(w1.sigterm().success());
    // The next 200, then 100 of the first 400 again: true duplicates of a completed batch.
    let mut again = second.to_vec();
    again.extend_from_slice(&first[..100]);
    s.produce(&again).await;
    let records = records(&s).await;
    assert_eq!(records.len(), 700);

    // A writer takes the partition, finds none of the 200 new keys stored, inserts
    // them, and dies before its device-state transaction: this is what it leaves.
    let ts = store_on(&s, client().await).await;
    let lease = ts.claim(0).await.unwrap();
    let dying = prepared(&records[400..600], &lease);
    s.db()
        .await
        .collection::<mongodb::bson::RawDocumentBuf>("telemetry")
        .insert_many(dying.iter().map(|p| &p.doc))
        .await
        .unwrap();
    assert_eq!(measurements(&s).await, (600, 600));
    assert_eq!(s.device_total().await, 400, "stored, not counted");

    let w2 = ts_writer(&s, "w2", &[]);
    testkit::wait_for("all committed", Duration::from_secs(120), || async {
        let (c, h) = s.committed_and_high();
        (c == h && h == 700).then_some(())
    })
    .await;
    assert_eq!(measurements(&s).await, (600, 600), "none twice, none lost");
    counts_exact(&s, 600).await;
    w2.wait_metric("Duplicates", 100.0).await;
    let m = w2.metric_totals();
    assert_eq!(
        (m["DocumentsInserted"], m["Duplicates"]),
        (200.0, 100.0),
        "{m:?}"
    );
    s.drop_db().await;
}

fn is_telemetry_insert(c: &mongodb::event::command::CommandStartedEvent) -> bool {
    c.command_name == "insert" && c.command.get_str("insert").ok() == Some("telemetry")
}

/// Records as a partition would hold them: the payloads framed, at offsets from `first`.
fn framed(
    payloads: &[serde_json::Map<String, serde_json::Value>],
    first: i64,
) -> Vec<(i64, Vec<u8>)> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let framed =
                telemetry::frame(&serde_json::Value::Object(p.clone()).to_string()).unwrap();
            let record = framed.into_kafka_record(&aws_lambda_events::sqs::SqsMessage::default());
            (first + i as i64, record.value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_a_failed_device_state_counts_its_own_measurements_once_and_no_write_is_transactional()
 {
    let env = StackEnv::get();
    let s = Setup::with_partitions(WRITER, env.kafka_bootstrap(), env.mongo_uri(), 1).await;
    let (client, commands) = testkit::mongo::monitored_client().await;
    let ts = store_on(&s, client).await;
    let lease = ts.claim(0).await.unwrap();
    let msgs = payloads(120);
    let first = prepared(&framed(&msgs[..50], 0), &lease);
    let stats = ts
        .write(&first, &lease, &Attempts::default())
        .await
        .unwrap();
    assert_eq!((stats.inserted, stats.duplicates), (50, 0));

    // A device whose state MongoDB refuses: the transaction fails after the insert.
    let victim = msgs[50]["deviceId"].as_str().unwrap().to_owned();
    let devices = s.db().await.collection::<Document>("devices");
    let had = devices
        .find_one(doc! {"_id": &victim})
        .await
        .unwrap()
        .unwrap()
        .get_i64("count")
        .unwrap();
    devices
        .update_one(doc! {"_id": &victim}, doc! {"$set": {"count": "many"}})
        .await
        .unwrap();
    let mut next = framed(&msgs[50..100], 50);
    next.extend(framed(&msgs[..10], 100)); // redelivered from the first, applied batch
    let second = prepared(&next, &lease);
    let attempts = Attempts::default();
    let failed = ts.write(&second, &lease, &attempts).await;
    assert!(
        matches!(failed, Err(StoreError::DeviceRefused { .. })),
        "{failed:?}"
    );
    assert_eq!(measurements(&s).await.0, 100, "inserted, not yet counted");

    devices
        .update_one(doc! {"_id": &victim}, doc! {"$set": {"count": had}})
        .await
        .unwrap();
    let stats = ts.write(&second, &lease, &attempts).await.unwrap();
    assert_eq!(
        (stats.inserted, stats.duplicates),
        (50, 10),
        "its own 50 counted once, the 10 not"
    );
    assert_eq!(measurements(&s).await, (100, 100));
    counts_exact(&s, 100).await;

    // Another writer takes the partition and retries a batch whose state never applied.
    let victim = msgs[100]["deviceId"].as_str().unwrap().to_owned();
    let had = devices
        .find_one(doc! {"_id": &victim})
        .await
        .unwrap()
        .unwrap()
        .get_i64("count")
        .unwrap();
    devices
        .update_one(doc! {"_id": &victim}, doc! {"$set": {"count": "many"}})
        .await
        .unwrap();
    let third = prepared(&framed(&msgs[100..120], 110), &lease);
    let failed = ts.write(&third, &lease, &attempts).await;
    assert!(
        matches!(failed, Err(StoreError::DeviceRefused { .. })),
        "{failed:?}"
    );
    devices
        .update_one(doc! {"_id": &victim}, doc! {"$set": {"count": had}})
        .await
        .unwrap();
    let new_owner = ts.claim(0).await.unwrap();
    let retried = prepared(&framed(&msgs[100..120], 110), &new_owner);
    let stats = ts
        .write(&retried, &new_owner, &Attempts::default())
        .await
        .unwrap();
    assert_eq!(stats.inserted, 20);
    assert_eq!(
        measurements(&s).await,
        (120, 120),
        "the older epoch's copies replaced, not doubled"
    );
    let gone = ts.clean_up(&third, &lease, &attempts).await.unwrap();
    assert_eq!(gone, 0, "the fenced epoch's copies were already replaced");
    counts_exact(&s, 120).await;

    // MongoDB forbids time-series writes in a transaction: none of ours is in one,
    // and the device state is (the server here refuses it too; this checks our side).
    let seen = commands.all();
    let on_telemetry: Vec<&(String, Document)> = seen
        .iter()
        .filter(|(name, c)| {
            ["insert", "delete", "update", "findAndModify"].contains(&name.as_str())
                && c.get_str(name).ok() == Some("telemetry")
        })
        .collect();
    for name in ["insert", "delete"] {
        assert!(
            on_telemetry.iter().any(|(n, _)| n == name),
            "a {name} on telemetry was sent"
        );
    }
    for (name, c) in &on_telemetry {
        assert!(
            !c.contains_key("autocommit") && !c.contains_key("startTransaction"),
            "{name} on the time-series collection inside a transaction: {c}"
        );
    }
    let device_updates: Vec<&(String, Document)> = seen
        .iter()
        .filter(|(n, c)| n == "update" && c.get_str("update").ok() == Some("devices"))
        .collect();
    assert!(!device_updates.is_empty());
    for (_, c) in device_updates {
        assert_eq!(
            c.get_bool("autocommit").ok(),
            Some(false),
            "device state in a transaction: {c}"
        );
    }
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zombie_that_inserts_after_losing_its_partition_leaves_no_duplicate() {
    let env = StackEnv::get();
    let s = Setup::with_partitions(WRITER, env.kafka_bootstrap(), env.mongo_uri(), 1).await;
    s.produce(&payloads(300)).await;
    let records = records(&s).await;

    // The zombie's inserts into telemetry wait at a gate: it has read its lease
    // (still its own) and the stored keys, and is paused before the insert lands.
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let (open_tx, open_rx) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(Some((held_tx, open_rx)));
    let gated = testkit::mongo::client_with_hook(env.mongo_uri(), move |c| {
        if is_telemetry_insert(c)
            && let Some((held, open)) = gate.lock().unwrap().take()
        {
            held.send(()).unwrap();
            open.recv_timeout(Duration::from_secs(180)).unwrap();
        }
    })
    .await;
    let zombie = store_on(&s, gated).await;
    let lease = zombie.claim(0).await.unwrap();
    let items = prepared(&records, &lease);
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        runtime.block_on(async {
            let attempts = Attempts::default();
            let result = zombie.write(&items, &lease, &attempts).await;
            // What the worker does when fenced.
            let cleaned = zombie.clean_up(&items, &lease, &attempts).await;
            (result, cleaned)
        })
    });
    held_rx.recv_timeout(Duration::from_secs(60)).unwrap();

    // Meanwhile the partition moved: a writer claims it and stores everything.
    let w = ts_writer(&s, "w", &[]);
    s.settled(300, SETTLE).await;
    open_tx.send(()).unwrap();
    let (result, cleaned) = task.await.unwrap();
    assert!(
        matches!(result, Err(StoreError::Fenced { .. })),
        "{result:?}"
    );
    assert_eq!(
        cleaned.unwrap(),
        300,
        "the zombie removed its own late copies"
    );
    assert_eq!(measurements(&s).await, (300, 300));
    counts_exact(&s, 300).await;
    drop(w);
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_writer_whose_partitions_moved_stores_nothing_twice() {
    let s = Setup::on_stack(WRITER).await;
    let (proxy, uri) = s.proxied_mongo();
    // A's MongoDB calls wait (it holds batches); its deadline outlasts the pause, so
    // it learns the fate of every insert it sent.
    let mut a = ts_writer(
        &s,
        "a",
        &[
            ("MONGODB_URI", &uri),
            ("MONGODB_TIMEOUT_MS", "90000"),
            ("STALL_TIMEOUT_MS", "200000"),
        ],
    );
    a.wait_ready().await;
    let msgs = payloads(3_000);
    s.produce(&msgs[..1_000]).await;
    testkit::wait_for("a stored some", Duration::from_secs(60), || async {
        (measurements(&s).await.0 > 0).then_some(())
    })
    .await;
    proxy.set(testkit::fault_proxy::Mode::BlackHole);
    s.produce(&msgs[1_000..]).await;
    testkit::wait_for("a holds batches", Duration::from_secs(30), || async {
        let (c, h) = s.committed_and_high();
        (c < h).then_some(())
    })
    .await;
    a.signal("-STOP");
    let b = ts_writer(&s, "b", &[]);
    s.settled(3_000, SETTLE).await;
    a.signal("-CONT");
    proxy.set(testkit::fault_proxy::Mode::Pass);
    testkit::wait_for("a fenced or idle", Duration::from_secs(120), || async {
        let fenced = a.log_count("another writer owns this partition") > 0;
        let revoked = a.log_count("partitions revoked") > 0;
        (fenced || revoked).then_some(())
    })
    .await;
    // Whatever A was doing when paused, it finishes it now: wait for it to go quiet.
    testkit::wait_for("no duplicate left", Duration::from_secs(120), || async {
        (measurements(&s).await == (3_000, 3_000)).then_some(())
    })
    .await;
    assert!(a.sigterm().success(), "{}", a.log_text());
    assert_eq!(measurements(&s).await, (3_000, 3_000));
    counts_exact(&s, 3_000).await;
    drop(b);
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_moves_partition_when_partitions_are_added_is_counted_exactly() {
    // Nisshi has no CreatePartitions: the topic has 4 partitions from the start, and
    // the first messages all go to partition 0, as when it had one. Keyed by device
    // afterwards, most devices move; their backlog on partition 0 is consumed while
    // their newer messages arrive on the others, and 300 old messages are redelivered
    // on the new partitions.
    let s = Setup::with_partitions(
        WRITER,
        StackEnv::get().kafka_bootstrap(),
        StackEnv::get().mongo_uri(),
        4,
    )
    .await;
    let msgs = payloads(2_000);
    kafka::produce_telemetry_to(&s.bootstrap, &s.topic, Some(0), &msgs[..1_000]).await;
    let mut later = msgs[1_000..].to_vec();
    later.extend_from_slice(&msgs[..300]);
    s.produce(&later).await;
    let w = ts_writer(&s, "w", &[("BATCH_SIZE", "100")]);
    w.wait_ready().await;
    s.settled(2_000, SETTLE).await;
    let moved = kafka::read_all_on(&s.bootstrap, &s.topic)
        .await
        .iter()
        .filter(|m| m.partition() != 0)
        .count();
    assert!(
        moved > 500,
        "devices moved to the other partitions: {moved}"
    );
    eprintln!(
        "two partitions raced: {} counted-elsewhere aborts, {} write retries, {} deletions",
        w.log_count("counted a message of this batch meanwhile"),
        w.metric_totals()
            .get("WriteRetries")
            .copied()
            .unwrap_or(0.0),
        w.log_count("or counted by another partition"),
    );
    assert_eq!(measurements(&s).await, (2_000, 2_000));
    counts_exact(&s, 2_000).await;
    // Metric lines come every second: wait for the last one.
    w.wait_metric("DocumentsInserted", 2_000.0).await;
    w.wait_metric("Duplicates", 300.0).await;
    let m = w.metric_totals();
    assert_eq!(
        (m["DocumentsInserted"], m["Duplicates"]),
        (2_000.0, 300.0),
        "{m:?}"
    );
    drop(w);
    s.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_writer_refuses_a_collection_of_another_shape_and_applies_a_new_retention() {
    let s = Setup::on_stack(WRITER).await;
    let db = s.db().await;
    db.create_collection("regular").await.unwrap();
    db.run_command(doc! {"create": "hours", "timeseries": {"timeField": "ts", "metaField": "source", "granularity": "hours"}})
        .await
        .unwrap();
    db.run_command(doc! {"create": "meta", "timeseries": {"timeField": "ts", "metaField": "m"}})
        .await
        .unwrap();
    let store = Store::from_client(client().await, &s.database, "telemetry", "devices");
    for (name, needle) in [
        (
            "regular",
            "is a regular collection but MONGODB_COLLECTION_TYPE=timeseries",
        ),
        (
            "hours",
            "has granularity hours; the configuration asks for granularity seconds",
        ),
        ("meta", "has metaField \"m\""),
    ] {
        let ts = TimeSeries::new(store.clone(), name, "writer_partitions", &s.topic);
        let err = ts.ensure(SECONDS, None).await.unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
    let mut w = Writer::start(&s, "regular-on-ts", &[("MONGODB_COLLECTION", "hours")]);
    assert!(!w.wait_exit(Duration::from_secs(60)).success());
    assert!(
        w.log_text()
            .contains("is a time-series collection but MONGODB_COLLECTION_TYPE=regular"),
        "{}",
        w.log_text()
    );

    let ts = TimeSeries::new(store.clone(), "kept", "writer_partitions", &s.topic);
    let expire = |db: mongodb::Database| async move {
        let r = db
            .run_command(doc! {"listCollections": 1, "filter": {"name": "kept"}})
            .await
            .unwrap();
        let e = r
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()[0]
            .as_document()
            .unwrap()
            .clone();
        e.get_document("options")
            .unwrap()
            .get("expireAfterSeconds")
            .cloned()
    };
    ts.ensure(SECONDS, Some(30)).await.unwrap();
    ts.ensure(SECONDS, Some(30)).await.unwrap();
    assert_eq!(
        expire(db.clone()).await.and_then(|b| b.as_i64()),
        Some(30 * 86_400)
    );
    ts.ensure(SECONDS, Some(7)).await.unwrap();
    assert_eq!(
        expire(db.clone()).await.and_then(|b| b.as_i64()),
        Some(7 * 86_400),
        "changed in place"
    );
    s.drop_db().await;
}

/// The window README's "Which collection type" leaves open, reproduced: an insert
/// that reaches the server after its writer stopped waiting for it, and after that
/// writer's next attempt and clean-up looked. Its measurements are stored twice;
/// no device count moves, nothing is lost.
#[tokio::test(flavor = "multi_thread")]
async fn measurements_left_by_an_insert_that_arrives_after_its_writer_gave_up() {
    use testkit::fault_proxy::Mode;
    let env = StackEnv::get();
    let s = Setup::with_partitions(WRITER, env.kafka_bootstrap(), env.mongo_uri(), 1).await;
    s.produce(&payloads(300)).await;
    let records = records(&s).await;
    let (proxy, uri) = s.proxied_mongo();
    let proxy = Arc::new(proxy);
    let hold = Arc::clone(&proxy);
    // From its insert on, the network holds everything the zombie sends.
    let held = testkit::mongo::client_with_hook(&uri, move |c| {
        if is_telemetry_insert(c) {
            hold.set(Mode::BlackHole);
        }
    })
    .await;
    let store = Store::from_client(held, &s.database, "telemetry", "devices")
        .with_timeout(Duration::from_secs(2));
    store.ensure_devices().await.unwrap();
    let zombie = TimeSeries::new(store, "telemetry", "writer_partitions", &s.topic);
    zombie.ensure(SECONDS, None).await.unwrap();
    let lease = zombie.claim(0).await.unwrap();
    let items = prepared(&records, &lease);
    let attempts = Attempts::default();
    let gave_up = zombie.write(&items, &lease, &attempts).await;
    assert!(
        matches!(gave_up, Err(StoreError::Timeout { op: "insert", .. })),
        "{gave_up:?}"
    );

    let w = ts_writer(&s, "w", &[]);
    s.settled(300, SETTLE).await;
    // Its next attempt (on a connection that answers): fenced, nothing of its own to remove yet.
    let direct = store_on(&s, client().await).await;
    let fenced = direct.write(&items, &lease, &attempts).await;
    assert!(
        matches!(fenced, Err(StoreError::Fenced { .. })),
        "{fenced:?}"
    );
    assert_eq!(direct.clean_up(&items, &lease, &attempts).await.unwrap(), 0);

    proxy.set(Mode::Pass);
    testkit::wait_for("the held insert lands", Duration::from_secs(30), || async {
        (measurements(&s).await.0 == 600).then_some(())
    })
    .await;
    assert_eq!(measurements(&s).await, (600, 300), "300 measurements twice");
    counts_exact(&s, 300).await;
    drop(w);
    s.drop_db().await;
}
