//! Exactly once into a MongoDB time-series collection, which has no unique index,
//! no upsert and no writes in a transaction. Per batch, after [`plan`]:
//!
//! 1. read the partition's lease (majority): another epoch there means another
//!    writer owns the partition since ([`StoreError::Fenced`]);
//! 2. read which of the batch's keys are stored (an indexed query on the devices,
//!    the batch's time range and `_id`; majority);
//! 3. delete older epochs' unapplied copies; insert the missing measurements
//!    (`ordered: false`, `w: majority`, never in a transaction);
//! 4. in one transaction on regular collections: the device state of what was
//!    inserted or recovered, and the lease's `applied` offset, only if the lease
//!    still holds this epoch.
//!
//! A fenced writer deletes the measurements it inserted for the batch it was
//! holding ([`TimeSeries::clean_up`]). The README states the windows that remain.

pub mod plan;

use std::sync::atomic::{AtomicBool, Ordering};

use bson::raw::{RawDocument, RawDocumentBuf};
use bson::{Bson, Document, doc, rawdoc};
use futures::TryStreamExt as _;
use mongodb::options::{CollectionOptions, ReadConcern, ReturnDocument};
use mongodb::{Collection, IndexModel};
use telemetry::document::{Prepared, field};

use crate::error::{StoreError, deadline};
use crate::store::{InsertFailure, Store, WriteStats, classify_insert, code};
use bridge_common::collection::CollectionType;
use bridge_common::collection::{self as spec, Bucketing, Existing};
use bridge_common::mongo::{DUPLICATE_KEY, NAMESPACE_EXISTS};
use plan::{Decision, Owner, Provenance};

const INDEX: &str = "source_deviceId_ts";

/// The partition this worker claimed, and where its lease document is.
#[derive(Debug, Clone)]
pub struct Lease {
    pub id: String,
    pub owner: Owner,
}

/// What the attempts at one batch have left unknown.
#[derive(Debug, Default)]
pub struct Attempts {
    /// A commit failed without saying whether it applied: the batch's state may be in.
    maybe_applied: AtomicBool,
}

#[derive(Clone)]
pub struct TimeSeries {
    store: Store,
    name: String,
    measurements: Collection<RawDocumentBuf>,
    leases: Collection<Document>,
    leases_name: String,
    topic: String,
}

/// Appends the measurement's provenance (what [`plan`] reads back).
pub fn stamp(doc: &mut RawDocumentBuf, p: Provenance) {
    doc.append(
        field::KAFKA,
        rawdoc! {"partition": p.partition, "offset": p.offset, "epoch": p.epoch},
    );
}

fn provenance(doc: &RawDocument) -> Option<Provenance> {
    let k = doc.get_document(field::KAFKA).ok()?;
    Some(Provenance {
        partition: k.get_i32("partition").ok()?,
        offset: k.get_i64("offset").ok()?,
        epoch: k.get_i64("epoch").ok()?,
    })
}

/// The `listCollections` entry of `name`, if it exists.
pub async fn collection_entry(store: &Store, name: &str) -> Result<Option<Document>, StoreError> {
    let db = store.database();
    deadline("listCollections", store.timeout(), async {
        let mut cursor = db
            .run_cursor_command(doc! {"listCollections": 1, "filter": {"name": name}})
            .await?;
        cursor.try_next().await
    })
    .await
}

/// Refuses to start on a collection of the other type (both modes).
pub async fn check_type(
    store: &Store,
    kind: CollectionType,
    name: &str,
    bucketing: Bucketing,
    expire_after_s: Option<i64>,
) -> Result<Existing, StoreError> {
    let entry = collection_entry(store, name).await?;
    spec::check(kind, name, entry.as_ref(), bucketing, expire_after_s)
        .map_err(|m| StoreError::Config(m.to_string()))
}

impl TimeSeries {
    pub fn new(store: Store, collection: &str, partitions: &str, topic: &str) -> Self {
        let db = store.database();
        let majority = || {
            CollectionOptions::builder()
                .read_concern(ReadConcern::majority())
                .write_concern(store.majority())
                .build()
        };
        Self {
            measurements: db.collection_with_options(collection, majority()),
            leases: db.collection_with_options(partitions, majority()),
            leases_name: partitions.to_owned(),
            name: collection.to_owned(),
            topic: topic.to_owned(),
            store,
        }
    }

    fn timeout(&self) -> std::time::Duration {
        self.store.timeout()
    }

    /// Creates the collection, its index and the lease collection, idempotently;
    /// refuses a collection of another shape; applies a changed retention in place.
    pub async fn ensure(
        &self,
        bucketing: Bucketing,
        retention_days: Option<u32>,
    ) -> Result<(), StoreError> {
        let expire = retention_days.map(|d| i64::from(d) * 86_400);
        let ts = CollectionType::Timeseries;
        let existing = match check_type(&self.store, ts, &self.name, bucketing, expire).await? {
            Existing::Missing => {
                let create = spec::create_command(&self.name, bucketing, expire);
                match deadline(
                    "create",
                    self.timeout(),
                    self.store.database().run_command(create),
                )
                .await
                {
                    // Another writer created it at the same time: check it is ours.
                    Err(e) if code(&e) == Some(NAMESPACE_EXISTS) => {
                        check_type(&self.store, ts, &self.name, bucketing, expire).await?
                    }
                    other => other.map(|_| Existing::Matches)?,
                }
            }
            other => other,
        };
        if let Existing::Retention { have } = existing {
            let value = expire.map_or(Bson::String("off".into()), Bson::Int64);
            let command = doc! {"collMod": &self.name, "expireAfterSeconds": value};
            deadline(
                "collMod",
                self.timeout(),
                self.store.database().run_command(command),
            )
            .await?;
            tracing::info!(was = ?have, now = ?expire, "time-series retention changed in place");
        }
        let index = IndexModel::builder()
            .keys(doc! {"source.deviceId": 1, "ts": 1})
            .options(
                mongodb::options::IndexOptions::builder()
                    .name(INDEX.to_owned())
                    .build(),
            )
            .build();
        deadline(
            "createIndexes",
            self.timeout(),
            self.measurements.create_index(index),
        )
        .await?;
        // Created here, not implicitly inside concurrent transactions (WriteConflict).
        let create = self.store.database().create_collection(&self.leases_name);
        match deadline("create", self.timeout(), create).await {
            Err(e) if code(&e) == Some(NAMESPACE_EXISTS) => Ok(()),
            other => other,
        }
    }

    /// Takes the partition: a new epoch, majority-written. Any writer still holding
    /// an older epoch is fenced from here on.
    pub async fn claim(&self, partition: i32) -> Result<Lease, StoreError> {
        let id = format!("{}:{partition}", self.topic);
        let owner = format!("pid {} on {}", std::process::id(), hostname());
        let update = doc! {
            "$inc": {"epoch": 1_i64},
            "$setOnInsert": {"applied": -1_i64},
            "$set": {"owner": owner, "claimedAt": bson::DateTime::now()},
        };
        for _ in 0..2 {
            let claim = self
                .leases
                .find_one_and_update(doc! {"_id": &id}, update.clone())
                .upsert(true)
                .return_document(ReturnDocument::After);
            match deadline("findAndModify", self.timeout(), claim).await {
                // Two first claims raced on the upsert: the second one retries as an update.
                Err(e) if code(&e) == Some(DUPLICATE_KEY) => continue,
                Err(e) => return Err(e),
                Ok(doc) => {
                    let epoch = doc
                        .as_ref()
                        .and_then(|d| d.get_i64("epoch").ok())
                        .unwrap_or(1);
                    tracing::info!(partition, epoch, "partition claimed");
                    return Ok(Lease {
                        id,
                        owner: Owner { partition, epoch },
                    });
                }
            }
        }
        Err(StoreError::Unavailable {
            op: "findAndModify",
            cause: crate::error::Cause {
                code: Some(DUPLICATE_KEY),
                labels: Vec::new(),
                message: "the lease upsert raced twice; retrying".into(),
            },
        })
    }

    /// The lease's `applied` offset while it still holds this epoch.
    async fn applied(&self, lease: &Lease) -> Result<i64, StoreError> {
        let doc = deadline(
            "find",
            self.timeout(),
            self.leases.find_one(doc! {"_id": &lease.id}),
        )
        .await?;
        let epoch = doc.as_ref().and_then(|d| d.get_i64("epoch").ok());
        if epoch != Some(lease.owner.epoch) {
            return Err(StoreError::Fenced {
                partition: lease.owner.partition,
                epoch: lease.owner.epoch,
                current: epoch,
            });
        }
        Ok(doc.and_then(|d| d.get_i64("applied").ok()).unwrap_or(-1))
    }

    /// Every stored copy of the items' keys, with its provenance.
    async fn copies(
        &self,
        items: &[Prepared],
    ) -> Result<Vec<(String, Option<Provenance>)>, StoreError> {
        let filter = lookup_filter(items);
        let found: Vec<RawDocumentBuf> = deadline("find", self.timeout(), async {
            self.measurements
                .find(filter)
                .projection(doc! {"_id": 1, field::KAFKA: 1})
                .await?
                .try_collect()
                .await
        })
        .await?;
        Ok(found
            .iter()
            .filter_map(|d| Some((d.get_str("_id").ok()?.to_owned(), provenance(d))))
            .collect())
    }

    /// Stores the items (stamped with [`stamp`]) exactly once; see the module doc.
    pub async fn write(
        &self,
        items: &[Prepared],
        lease: &Lease,
        attempts: &Attempts,
    ) -> Result<WriteStats, StoreError> {
        if items.is_empty() {
            return Ok(WriteStats::default());
        }
        let t = self.timeout();
        let applied = self.applied(lease).await?;
        let copies = self.copies(items).await?;
        let keys: Vec<&str> = items.iter().map(|p| p.key.as_str()).collect();
        let plan = plan::plan(&keys, &copies, lease.owner, applied);
        if !plan.stale.is_empty() || !plan.superseded.is_empty() {
            let filter = doc! {
                "kafka.partition": lease.owner.partition,
                "kafka.offset": {"$gt": applied},
                "$or": [
                    {"_id": {"$in": &plan.stale}, "kafka.epoch": {"$lt": lease.owner.epoch}},
                    {"_id": {"$in": &plan.superseded}, "kafka.epoch": lease.owner.epoch},
                ],
            };
            let deleted = deadline("delete", t, self.measurements.delete_many(filter)).await?;
            tracing::info!(
                partition = lease.owner.partition,
                deleted = deleted.deleted_count,
                "removed measurements never applied (an older epoch's, or counted by another partition)"
            );
        }
        let fresh: Vec<(usize, &Prepared)> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| plan.decisions[*i] == Decision::Insert)
            .collect();
        if !fresh.is_empty() {
            let insert = self
                .measurements
                .insert_many(fresh.iter().map(|(_, p)| &p.doc))
                .ordered(false);
            match tokio::time::timeout(t, insert).await {
                Err(_) => {
                    return Err(StoreError::Timeout {
                        op: "insert",
                        after: t,
                    });
                }
                Ok(Err(e)) => match classify_insert(e, &fresh) {
                    InsertFailure::Store(e) => return Err(e),
                    // No unique index on a time-series collection: cannot happen; retried.
                    InsertFailure::Duplicate => {
                        return Err(StoreError::Unavailable {
                            op: "insert",
                            cause: crate::error::Cause {
                                code: Some(DUPLICATE_KEY),
                                labels: Vec::new(),
                                message: "duplicate key on a time-series collection".into(),
                            },
                        });
                    }
                },
                Ok(Ok(_)) => {}
            }
        }
        let counted: Vec<&Prepared> = items
            .iter()
            .zip(&plan.decisions)
            .filter(|(_, d)| **d != Decision::Duplicate)
            .map(|(p, _)| p)
            .collect();
        if !counted.is_empty() {
            let last = items
                .iter()
                .filter_map(|p| provenance(&p.doc))
                .map(|p| p.offset)
                .max()
                .unwrap_or(applied);
            self.apply(lease, &counted, last, attempts).await?;
        }
        Ok(WriteStats {
            inserted: counted.len(),
            duplicates: items.len() - counted.len(),
        })
    }

    /// The device state of `counted` and the lease's `applied`, in one transaction,
    /// only while the lease holds this epoch.
    async fn apply(
        &self,
        lease: &Lease,
        counted: &[&Prepared],
        last: i64,
        attempts: &Attempts,
    ) -> Result<(), StoreError> {
        let t = self.timeout();
        let mut session = self.store.transaction().await?;
        let result = async {
            let moved = self.moved_devices(&mut session, lease, counted).await?;
            if !moved.is_empty() {
                let theirs: Vec<&Prepared> = counted
                    .iter()
                    .copied()
                    .filter(|p| moved.contains(p.device_id.as_str()))
                    .collect();
                self.counted_elsewhere(&mut session, lease, &theirs).await?;
            }
            let partition = Some(lease.owner.partition);
            self.store
                .apply_devices(&mut session, counted.iter().copied(), partition)
                .await?;
            let moved = self
                .leases
                .update_one(
                    doc! {"_id": &lease.id, "epoch": lease.owner.epoch},
                    doc! {"$max": {"applied": last}, "$set": {"updatedAt": bson::DateTime::now()}},
                )
                .session(&mut session);
            if deadline("update", t, moved).await?.matched_count == 0 {
                return Err(StoreError::Fenced {
                    partition: lease.owner.partition,
                    epoch: lease.owner.epoch,
                    current: None,
                });
            }
            let commit = deadline("commitTransaction", t, session.commit_transaction()).await;
            if commit.is_err() {
                attempts.maybe_applied.store(true, Ordering::SeqCst);
            }
            commit
        }
        .await;
        if result.is_err() {
            let _ = tokio::time::timeout(t, session.abort_transaction()).await;
        }
        result
    }

    /// Inside the device-state transaction: the devices of `counted` whose state
    /// another partition applied last (their `partition`; absent on state written
    /// by the regular mode). Only these can have a message counted elsewhere since
    /// the lookup: the device-state transaction of that other partition set it.
    async fn moved_devices(
        &self,
        session: &mut mongodb::ClientSession,
        lease: &Lease,
        counted: &[&Prepared],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut ids: Vec<&str> = counted.iter().map(|p| p.device_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let devices = self
            .store
            .database()
            .collection::<RawDocumentBuf>(self.store.devices_name());
        let t = self.timeout();
        let filter = doc! {"_id": {"$in": ids}};
        let found = find_in(&devices, session, filter, doc! {"partition": 1}, t).await?;
        Ok(found
            .into_iter()
            .filter(|d| d.get_i32("partition").ok() != Some(lease.owner.partition))
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect())
    }

    /// Inside the device-state transaction, for devices another partition applied
    /// last: whether that partition stored and counted one of `counted` since the
    /// lookup (the same message on two partitions after partitions were added).
    /// Both transactions write the device's state (and its `partition`), so one
    /// commits first and the other sees it here, or fails with a write conflict and
    /// retries; its plan then deletes its own copy. Reads of a time-series
    /// collection are allowed in a transaction; writes are not.
    async fn counted_elsewhere(
        &self,
        session: &mut mongodb::ClientSession,
        lease: &Lease,
        counted: &[&Prepared],
    ) -> Result<(), StoreError> {
        let t = self.timeout();
        let mut filter = lookup_filter(counted.iter().copied());
        filter.insert("kafka.partition", doc! {"$ne": lease.owner.partition});
        let projection = doc! {"_id": 1, field::KAFKA: 1};
        let found = find_in(&self.measurements, session, filter, projection, t).await?;
        let others: Vec<Provenance> = found.iter().filter_map(|d| provenance(d)).collect();
        for other in others {
            let id = format!("{}:{}", self.topic, other.partition);
            let lease_doc = self
                .leases
                .find_one(doc! {"_id": id})
                .session(&mut *session);
            let applied = deadline("find", t, lease_doc)
                .await?
                .and_then(|d| d.get_i64("applied").ok())
                .unwrap_or(-1);
            if other.offset <= applied {
                return Err(StoreError::Unavailable {
                    op: "commitTransaction",
                    cause: crate::error::Cause {
                        code: None,
                        labels: Vec::new(),
                        message: format!(
                            "partition {} counted a message of this batch meanwhile; retrying without it",
                            other.partition
                        ),
                    },
                });
            }
        }
        Ok(())
    }

    /// After [`StoreError::Fenced`]: deletes what this epoch inserted for `items` and
    /// never applied, so the new owner's copies are the only ones. When a commit
    /// of the batch might have applied, only copies past the lease's `applied` go.
    pub async fn clean_up(
        &self,
        items: &[Prepared],
        lease: &Lease,
        attempts: &Attempts,
    ) -> Result<u64, StoreError> {
        let offsets: Vec<i64> = items
            .iter()
            .filter_map(|p| provenance(&p.doc))
            .map(|p| p.offset)
            .collect();
        let (Some(low), Some(high)) = (offsets.iter().min(), offsets.iter().max()) else {
            return Ok(0);
        };
        let mut low = *low;
        if attempts.maybe_applied.load(Ordering::SeqCst) {
            let doc = deadline(
                "find",
                self.timeout(),
                self.leases.find_one(doc! {"_id": &lease.id}),
            )
            .await?;
            let applied = doc.and_then(|d| d.get_i64("applied").ok()).unwrap_or(-1);
            low = low.max(applied + 1);
        }
        let keys: Vec<&str> = items.iter().map(|p| p.key.as_str()).collect();
        let filter = doc! {
            "_id": {"$in": keys},
            "kafka.partition": lease.owner.partition,
            "kafka.epoch": lease.owner.epoch,
            "kafka.offset": {"$gte": low, "$lte": *high},
        };
        let deleted = deadline(
            "delete",
            self.timeout(),
            self.measurements.delete_many(filter),
        )
        .await?;
        Ok(deleted.deleted_count)
    }
}

/// Every document `filter` matches, read inside the session's transaction, within `t`.
async fn find_in(
    coll: &Collection<RawDocumentBuf>,
    session: &mut mongodb::ClientSession,
    filter: Document,
    projection: Document,
    t: std::time::Duration,
) -> Result<Vec<RawDocumentBuf>, StoreError> {
    deadline("find", t, async {
        let mut cursor = coll
            .find(filter)
            .projection(projection)
            .session(&mut *session)
            .await?;
        let mut out = Vec::new();
        while let Some(d) = cursor.next(&mut *session).await {
            out.push(d?);
        }
        Ok(out)
    })
    .await
}

/// The indexed query for stored copies of `items`: their devices, their time
/// range (the `{source.deviceId, ts}` index) and their keys.
fn lookup_filter<'a, I>(items: I) -> Document
where
    I: IntoIterator<Item = &'a Prepared> + Clone,
{
    let mut devices: Vec<&str> = items
        .clone()
        .into_iter()
        .map(|p| p.device_id.as_str())
        .collect();
    devices.sort_unstable();
    devices.dedup();
    let keys: Vec<&str> = items.clone().into_iter().map(|p| p.key.as_str()).collect();
    let from = items
        .clone()
        .into_iter()
        .map(|p| p.ts)
        .min()
        .unwrap_or_default();
    let to = items.into_iter().map(|p| p.ts).max().unwrap_or_default();
    doc! {
        "source.deviceId": {"$in": devices},
        "ts": {"$gte": bson::DateTime::from_chrono(from), "$lte": bson::DateTime::from_chrono(to)},
        "_id": {"$in": keys},
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".into())
}
