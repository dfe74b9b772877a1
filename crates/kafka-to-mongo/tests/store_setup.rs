//! Start-up against the real MongoDB (the stack's SecantusDB): indexes and the
//! devices collection are ensured idempotently; the TTL follows the retention;
//! device state in the old flat shape is migrated.

use bson::{Document, doc};
use kafka_to_mongo::store::Store;
use telemetry::document::Prepared;
use testkit::StackEnv;

async fn store_on_fresh_database(name: &str) -> (mongodb::Database, Store) {
    let db = testkit::mongo::fresh_database(name).await;
    let store = store_on(&db).await;
    (db, store)
}

async fn store_on(db: &mongodb::Database) -> Store {
    Store::connect(
        StackEnv::get().mongo_uri(),
        db.name(),
        "telemetry",
        "devices",
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_creates_the_index_and_the_devices_collection_idempotently() {
    let (db, store) = store_on_fresh_database("setup").await;
    for retention in [Some(30), Some(30), None] {
        store.ensure_indexes(retention).await.unwrap();
        let names = db.list_collection_names().await.unwrap();
        // Created up front: implicit creation inside concurrent first transactions conflicts.
        assert!(names.iter().any(|n| n == "devices"), "{names:?}");
        let indexes = db
            .collection::<bson::Document>("telemetry")
            .list_index_names()
            .await
            .unwrap();
        assert!(indexes.iter().any(|n| n == "deviceId_ts"), "{indexes:?}");
        assert_eq!(
            indexes.iter().any(|n| n == "ts_ttl"),
            retention.is_some(),
            "{indexes:?}"
        );
    }
    db.drop().await.unwrap();
}

fn reading(device: &str, seq: u64, ts_ms: i64) -> Prepared {
    let body =
        serde_json::json!({"deviceId": device, "seq": seq, "ts": ts_ms, "readings": {"v": seq}});
    let now = chrono::Utc::now();
    let t = telemetry::validate(body.as_object().unwrap().clone(), &[], now).unwrap();
    Prepared::new(format!("{device}#seq:{seq}"), &t, now).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn device_state_in_the_old_flat_shape_is_migrated_and_then_kept_newest() {
    let (db, store) = store_on_fresh_database("migrate").await;
    store.ensure_indexes(None).await.unwrap();
    let base = 1_767_225_600_000i64;
    let devices = db.collection::<Document>("devices");
    devices
        .insert_one(doc! {
            "_id": "old-1", "count": 5_i64,
            "firstSeen": bson::DateTime::from_millis(base),
            "lastTs": bson::DateTime::from_millis(base + 5_000), "lastSeq": 5_i64,
            "lastKey": "old-1#seq:5", "lastReadings": {"v": 5_i64},
        })
        .await
        .unwrap();
    assert_eq!(store.migrate_device_state().await.unwrap(), 1);
    assert_eq!(store.migrate_device_state().await.unwrap(), 0, "idempotent");
    let migrated = devices
        .find_one(doc! {"_id": "old-1"})
        .await
        .unwrap()
        .unwrap();
    assert!(!migrated.contains_key("lastTs"), "{migrated}");
    let last = migrated.get_document("last").unwrap();
    assert_eq!(last.get_i64("seq").unwrap(), 5);
    assert_eq!(last.get_str("key").unwrap(), "old-1#seq:5");

    // An older message counts but does not move `last`; a newer one moves it.
    store
        .write(&[reading("old-1", 3, base + 3_000)])
        .await
        .unwrap();
    store
        .write(&[reading("old-1", 6, base + 6_000)])
        .await
        .unwrap();
    let now = devices
        .find_one(doc! {"_id": "old-1"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.get_i64("count").unwrap(), 7);
    let last = now.get_document("last").unwrap();
    assert_eq!(last.get_i64("seq").unwrap(), 6);
    assert_eq!(
        last.get_datetime("ts").unwrap().timestamp_millis(),
        base + 6_000
    );
    assert_eq!(
        last.get_document("readings").unwrap().get_i64("v").unwrap(),
        6
    );
    db.drop().await.unwrap();
}

async fn ttl_seconds(db: &mongodb::Database) -> Option<i64> {
    use futures::TryStreamExt as _;
    let indexes: Vec<mongodb::IndexModel> = db
        .collection::<Document>("telemetry")
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    indexes
        .iter()
        .find(|i| i.options.as_ref().and_then(|o| o.name.as_deref()) == Some("ts_ttl"))
        .and_then(|i| i.options.as_ref()?.expire_after)
        .map(|d| d.as_secs() as i64)
}

#[tokio::test(flavor = "multi_thread")]
async fn writers_starting_together_with_a_retention_all_succeed_and_a_new_retention_applies_in_place()
 {
    let (db, first) = store_on_fresh_database("ttl-race").await;
    let second = store_on(&db).await;
    // ECS starts tasks together: every one of them must get through start-up.
    for round in 0..5 {
        let (a, b) = tokio::join!(
            first.ensure_indexes(Some(30)),
            second.ensure_indexes(Some(30))
        );
        assert!(a.is_ok() && b.is_ok(), "round {round}: {a:?} {b:?}");
    }
    assert_eq!(ttl_seconds(&db).await, Some(30 * 86_400));

    // A new retention changes the expiry of the same index; it is never dropped meanwhile.
    let (a, b) = tokio::join!(
        first.ensure_indexes(Some(7)),
        second.ensure_indexes(Some(7))
    );
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(ttl_seconds(&db).await, Some(7 * 86_400));
    db.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn already_stored_documents_are_found_by_a_majority_read() {
    let db = testkit::mongo::fresh_database("majority").await;
    let (client, commands) = testkit::mongo::monitored_client().await;
    let store = Store::from_client(client, db.name(), "telemetry", "devices");
    store.ensure_indexes(None).await.unwrap();
    let base = 1_767_225_600_000i64;
    let batch = [reading("d", 1, base), reading("d", 2, base + 1_000)];
    store.write(&batch[..1]).await.unwrap();
    // One of the two is stored: the transaction aborts on the duplicate, and the
    // writer asks which documents exist. A failover could roll back a document seen
    // by a local read after the offset is committed past it: only majority counts.
    let stats = store.write(&batch).await.unwrap();
    assert_eq!((stats.inserted, stats.duplicates), (1, 1));
    let finds = commands.named("find");
    assert!(!finds.is_empty(), "the existing documents were looked up");
    for f in &finds {
        let level = f
            .get_document("readConcern")
            .ok()
            .and_then(|r| r.get_str("level").ok());
        assert_eq!(level, Some("majority"), "{f}");
    }
    db.drop().await.unwrap();
}
