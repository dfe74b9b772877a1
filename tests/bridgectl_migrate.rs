//! `bridgectl migrate-timeseries` against the real local stack (SecantusDB): a copy
//! in slices, a crash between an insert and its checkpoint, a run with nothing left
//! to copy, the refusals, and documents that cannot be measurements. Each test has
//! its own database; the stack down fails them (testkit panics), never skips them.

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Output};

use bson::raw::RawDocumentBuf;
use chrono::Utc;
use futures::TryStreamExt as _;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use serde_json::Value;
use telemetry::document::{regular_to_timeseries, to_document};
use telemetry::sample::{DEFAULT_START_MS, Generator, rule_body};
use testkit::StackEnv;

const SOURCE: &str = "telemetry";
const TARGET: &str = "telemetry_ts";

/// `n` stored regular documents, as the writer makes them from validated payloads
/// (with the IoT rule's topic, client id and receive time).
fn regular_documents(n: usize) -> Vec<RawDocumentBuf> {
    Generator::new(20, 7, DEFAULT_START_MS)
        .take(n)
        .enumerate()
        .map(|(i, payload)| {
            let body = rule_body(&payload, DEFAULT_START_MS + 400 + 250 * i as i64);
            let t = telemetry::validate(body.clone(), &[], Utc::now()).expect("valid sample");
            let key = telemetry::idempotency_key(&t.device_id, &body);
            to_document(&key, &t, Utc::now()).expect("document")
        })
        .collect()
}

async fn fill(db: &Database, name: &str, docs: &[RawDocumentBuf]) {
    db.collection::<RawDocumentBuf>(name)
        .insert_many(docs)
        .await
        .unwrap_or_else(|e| panic!("insert into {name}: {e}"));
}

/// Runs `bridgectl migrate-timeseries ARGS` on `db` with the stack's environment.
fn migrate(db: &Database, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bridgectl-under-test"))
        .arg("migrate-timeseries")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(StackEnv::get().vars())
        .env("MONGODB_DATABASE", db.name())
        .env("RUST_LOG", "error")
        .current_dir(testkit::workspace_root())
        .output()
        .expect("run bridgectl")
}

/// The run's JSON summary; the run must succeed.
fn migrate_ok(db: &Database, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = migrate(db, &all);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "migrate-timeseries {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    let summary: Value = serde_json::from_str(stdout.trim()).expect("one JSON summary");
    eprintln!(
        "migrate-timeseries {args:?}: copied {} already present {} skipped {} read {} in {:.2} s = {:.0} docs/s",
        summary["copied"],
        summary["already_present"],
        summary["skipped"],
        summary["read"],
        summary["elapsed_s"].as_f64().unwrap_or_default(),
        summary["docs_per_s"].as_f64().unwrap_or_default(),
    );
    summary
}

/// The run must fail; returns stdout + stderr.
fn migrate_fails(db: &Database, args: &[&str]) -> String {
    let out = migrate(db, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "migrate-timeseries {args:?} should fail:\n{text}"
    );
    text
}

async fn all(db: &Database, name: &str) -> Vec<Document> {
    db.collection::<Document>(name)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn count(db: &Database, name: &str) -> u64 {
    db.collection::<Document>(name)
        .count_documents(doc! {})
        .await
        .unwrap()
}

async fn distinct_ids(db: &Database, name: &str) -> usize {
    let groups: Vec<Document> = db
        .collection::<Document>(name)
        .aggregate([doc! {"$group": {"_id": "$_id"}}])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    groups.len()
}

/// Every target document is its source document in the time-series layout, once.
async fn assert_exact_copy(db: &Database, source: &[RawDocumentBuf]) {
    let want: BTreeMap<String, Document> = source
        .iter()
        .map(|raw| {
            let doc = Document::try_from(regular_to_timeseries(raw).unwrap().as_ref()).unwrap();
            (doc.get_str("_id").unwrap().to_owned(), doc)
        })
        .collect();
    let have = all(db, TARGET).await;
    assert_eq!(have.len(), source.len(), "target count");
    assert_eq!(distinct_ids(db, TARGET).await, source.len(), "distinct _id");
    for doc in have {
        let id = doc.get_str("_id").unwrap().to_owned();
        assert_eq!(Some(&doc), want.get(&id), "target document {id}");
    }
}

async fn checkpoint(db: &Database) -> Document {
    db.collection::<Document>("migrations")
        .find_one(doc! {"_id": format!("{SOURCE} -> {TARGET}")})
        .await
        .unwrap()
        .expect("a checkpoint")
}

#[tokio::test]
async fn slices_and_a_crash_between_insert_and_checkpoint_copy_every_document_once() {
    let db = testkit::mongo::fresh_database("migrate").await;
    let source = regular_documents(2_500);
    let keys: HashSet<&str> = source.iter().map(|d| d.get_str("_id").unwrap()).collect();
    assert_eq!(keys.len(), 2_500, "the sample has distinct keys");
    fill(&db, SOURCE, &source).await;

    // (1) A first slice.
    let first = migrate_ok(&db, &["--to", TARGET, "--limit", "1000"]);
    assert_eq!(first["copied"], 1_000, "{first}");
    assert_eq!(first["already_present"], 0);
    assert_eq!(first["pass_complete"], false);
    assert_eq!(first["target_created"], true);
    assert!(
        first["next_step"]
            .as_str()
            .unwrap()
            .contains("run the same command again"),
        "{first}"
    );
    assert_eq!(count(&db, TARGET).await, 1_000);
    let cp = checkpoint(&db).await;
    assert_eq!(cp.get_i64("copied").unwrap(), 1_000);
    assert!(!cp.get_bool("done").unwrap());
    assert!(!cp.contains_key("owner"), "the claim is released: {cp}");

    // (2) A crash after the next batch's insert, before its checkpoint: some of its
    // documents are in the target, and the checkpoint does not say so.
    let last = cp.get_str("lastId").unwrap().to_owned();
    let mut next: Vec<&RawDocumentBuf> = source
        .iter()
        .filter(|d| d.get_str("_id").unwrap() > last.as_str())
        .collect();
    next.sort_by(|a, b| a.get_str("_id").unwrap().cmp(b.get_str("_id").unwrap()));
    let planted: Vec<RawDocumentBuf> = next
        .iter()
        .take(1_000)
        .step_by(3)
        .map(|d| regular_to_timeseries(d).unwrap())
        .collect();
    fill(&db, TARGET, &planted).await;
    let planted = planted.len() as u64;
    assert_eq!(planted, 334);

    let second = migrate_ok(&db, &["--to", TARGET]);
    assert_eq!(second["copied"], 1_500 - planted, "{second}");
    assert_eq!(second["already_present"], planted);
    assert_eq!(second["duplicates_in_target"], 0);
    assert_eq!(second["pass_complete"], true);
    assert_eq!(second["resumed_after"], format!("\"{last}\""));
    assert!(
        second["next_step"]
            .as_str()
            .unwrap()
            .contains("MONGODB_COLLECTION_TYPE=timeseries MONGODB_COLLECTION=telemetry_ts"),
        "{second}"
    );
    assert_exact_copy(&db, &source).await;
    assert!(checkpoint(&db).await.get_bool("done").unwrap());

    // (3) Nothing left: a new full pass finds every document there.
    let third = migrate_ok(&db, &["--to", TARGET]);
    assert_eq!(third["copied"], 0, "{third}");
    assert_eq!(third["already_present"], 2_500);
    assert_eq!(third["pass"], 2);
    assert_eq!(third["pass_complete"], true);
    assert_exact_copy(&db, &source).await;
    // ... and so does --from-start, in small batches.
    let again = migrate_ok(
        &db,
        &["--to", TARGET, "--from-start", "--batch-size", "300"],
    );
    assert_eq!(again["copied"], 0, "{again}");
    assert_eq!(again["already_present"], 2_500);

    let names = db.list_collection_names().await.unwrap();
    assert!(
        !names.iter().any(|n| n == "devices"),
        "the devices collection is not touched: {names:?}"
    );
    assert_eq!(count(&db, SOURCE).await, 2_500, "the source is not changed");
}

#[tokio::test]
async fn a_target_of_another_shape_and_a_source_that_is_not_regular_are_refused() {
    let db = testkit::mongo::fresh_database("migrate").await;
    fill(&db, SOURCE, &regular_documents(10)).await;
    db.collection::<Document>("plain")
        .insert_one(doc! {"_id": "x"})
        .await
        .unwrap();

    // (4) An existing regular collection as --to.
    let out = migrate_fails(&db, &["--to", "plain"]);
    assert!(
        out.contains(
            "collection plain is a regular collection but MONGODB_COLLECTION_TYPE=timeseries"
        ),
        "{out}"
    );
    assert_eq!(all(&db, "plain").await, vec![doc! {"_id": "x"}]);

    // A time-series collection bucketed otherwise.
    db.run_command(doc! {"create": "hourly", "timeseries": {"timeField": "ts", "metaField": "source", "granularity": "hours"}})
        .await
        .unwrap();
    let out = migrate_fails(&db, &["--to", "hourly"]);
    assert!(
        out.contains(
            "time-series collection hourly has granularity hours; the configuration asks for granularity seconds"
        ),
        "{out}"
    );
    // ... which is fine with the same bucketing.
    let ok = migrate_ok(&db, &["--to", "hourly", "--granularity", "hours"]);
    assert_eq!(ok["copied"], 10, "{ok}");
    assert_eq!(ok["target_created"], false);

    // --from must be an existing regular collection.
    let out = migrate_fails(&db, &["--from", "hourly", "--to", "other"]);
    assert!(
        out.contains("--from must be a regular collection")
            && out.contains("hourly is a time-series collection"),
        "{out}"
    );
    let out = migrate_fails(&db, &["--from", "nothing", "--to", "other"]);
    assert!(out.contains("collection nothing does not exist"), "{out}");
    let names = db.list_collection_names().await.unwrap();
    assert!(
        !names.iter().any(|n| n == "other"),
        "a refused run creates nothing: {names:?}"
    );
}

#[tokio::test]
async fn a_document_that_cannot_be_a_measurement_stops_the_run_or_is_skipped() {
    let db = testkit::mongo::fresh_database("migrate").await;
    let source = regular_documents(50);
    fill(&db, SOURCE, &source).await;
    db.collection::<Document>(SOURCE)
        .insert_one(doc! {"_id": "broken#1", "ts": bson::DateTime::now(), "readings": {"t": 1}})
        .await
        .unwrap();

    // (5) Without --skip-invalid: the run stops, naming the document and the rule.
    let out = migrate_fails(&db, &["--to", TARGET, "--batch-size", "10"]);
    assert!(
        out.contains(
            "document _id \"broken#1\" in telemetry cannot be a measurement: deviceId: missing"
        ),
        "{out}"
    );
    // "broken#1" sorts first: nothing of its batch was copied.
    assert_eq!(count(&db, TARGET).await, 0);

    let skipped = migrate_ok(
        &db,
        &["--to", TARGET, "--skip-invalid", "--batch-size", "10"],
    );
    assert_eq!(skipped["skipped"], 1, "{skipped}");
    assert_eq!(
        skipped["skipped_examples"],
        serde_json::json!([{"id": "\"broken#1\"", "reason": "deviceId: missing"}])
    );
    assert_eq!(skipped["copied"], 50);
    assert_eq!(skipped["pass_complete"], true);
    assert_exact_copy(&db, &source).await;

    // The human summary names it too.
    let out = migrate(&db, &["--to", TARGET, "--skip-invalid"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for part in [
        "skipped (invalid) 1",
        "_id \"broken#1\": deviceId: missing",
        "already present   50",
    ] {
        assert!(text.contains(part), "{text}\nshould say {part}");
    }
    let left = db
        .collection::<Document>(TARGET)
        .count_documents(doc! {"_id": Bson::String("broken#1".into())})
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_migration_held_by_a_live_run_is_refused_and_a_silent_one_taken_over() {
    let db = testkit::mongo::fresh_database("migrate").await;
    let source = regular_documents(100);
    fill(&db, SOURCE, &source).await;
    let checkpoints = db.collection::<Document>("migrations");
    let key = format!("{SOURCE} -> {TARGET}");
    let held = |heartbeat: bson::DateTime| {
        doc! {"$set": {"owner": {"run": "other", "pid": 4242_i64, "host": "elsewhere"}, "heartbeatAt": heartbeat}}
    };
    checkpoints
        .update_one(doc! {"_id": &key}, held(bson::DateTime::now()))
        .upsert(true)
        .await
        .unwrap();
    let out = migrate_fails(&db, &["--to", TARGET]);
    assert!(
        out.contains("is held by pid 4242 on elsewhere")
            && out.contains("another run is in progress"),
        "{out}"
    );
    assert_eq!(count(&db, TARGET).await, 0);

    // Silent for longer than 6 x --timeout-ms (at least 60 s): taken over.
    let long_ago = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - 61_000);
    checkpoints
        .update_one(doc! {"_id": &key}, held(long_ago))
        .await
        .unwrap();
    let taken = migrate_ok(&db, &["--to", TARGET, "--timeout-ms", "1000"]);
    assert_eq!(taken["copied"], 100, "{taken}");
    assert_exact_copy(&db, &source).await;
    assert!(!checkpoint(&db).await.contains_key("owner"));
}

#[tokio::test]
async fn ctrl_c_stops_after_a_checkpoint_and_the_next_run_resumes_there() {
    let db = testkit::mongo::fresh_database("migrate").await;
    let source = regular_documents(2_500);
    fill(&db, SOURCE, &source).await;
    let child = Command::new(env!("CARGO_BIN_EXE_bridgectl-under-test"))
        .args([
            "migrate-timeseries",
            "--to",
            TARGET,
            "--batch-size",
            "1",
            "--json",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(StackEnv::get().vars())
        .env("MONGODB_DATABASE", db.name())
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run bridgectl");
    let checkpoints = db.collection::<Document>("migrations");
    testkit::wait_for(
        "a few checkpoints",
        std::time::Duration::from_secs(60),
        || {
            let checkpoints = checkpoints.clone();
            async move {
                let c = checkpoints.find_one(doc! {}).await.ok().flatten()?;
                (c.get_i64("copied").unwrap_or(0) >= 20).then_some(())
            }
        },
    )
    .await;
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stopped: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(stopped["interrupted"], true, "{stopped}");
    assert_eq!(stopped["pass_complete"], false);
    let copied = stopped["copied"].as_u64().unwrap();
    assert!(copied > 0 && copied < 2_500, "{stopped}");
    let cp = checkpoint(&db).await;
    assert_eq!(cp.get_i64("copied").unwrap() as u64, copied);
    assert!(!cp.contains_key("owner"), "the claim is released: {cp}");

    let rest = migrate_ok(&db, &["--to", TARGET]);
    assert_eq!(rest["copied"].as_u64().unwrap(), 2_500 - copied, "{rest}");
    assert_eq!(rest["already_present"], 0);
    assert_exact_copy(&db, &source).await;
}
