//! Start-up against the real MongoDB (the stack's SecantusDB): indexes and the
//! devices collection are ensured idempotently; the TTL follows the retention.

use kafka_to_mongo::store::Store;
use testkit::StackEnv;

#[tokio::test(flavor = "multi_thread")]
async fn start_up_creates_the_index_and_the_devices_collection_idempotently() {
    let db = testkit::mongo::fresh_database("setup").await;
    let store = Store::connect(
        StackEnv::get().mongo_uri(),
        db.name(),
        "telemetry",
        "devices",
    )
    .await
    .unwrap();
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
