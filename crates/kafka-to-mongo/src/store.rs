//! MongoDB: the telemetry collection (one document per idempotency key) and the
//! devices collection, written together in one transaction per batch.

use std::collections::HashSet;
use std::time::Duration;

use bson::raw::RawDocumentBuf;
use bson::{Bson, Document, doc, rawdoc};
use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use mongodb::error::{Error as MongoError, ErrorKind};
use mongodb::options::{ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use telemetry::{Classify, Retry, Telemetry, Violation};

use crate::devices;

const DUPLICATE_KEY: i32 = 11_000;
const NAMESPACE_EXISTS: i32 = 48;
const TTL_INDEX: &str = "ts_ttl";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Network, no primary, timeouts, write conflicts: the same batch will succeed later.
    #[error("MongoDB unavailable: {0}")]
    Transient(String),
    /// MongoDB refused one document (a collection validator, say): it can never be stored.
    #[error("MongoDB rejected document #{index}: error {code}: {message}")]
    Rejected {
        index: usize,
        code: i32,
        message: String,
    },
    #[error("MongoDB configuration: {0}")]
    Config(String),
}

impl Classify for StoreError {
    fn retry(&self) -> Retry {
        match self {
            StoreError::Transient(_) => Retry::Transient,
            StoreError::Rejected { .. } | StoreError::Config(_) => Retry::Permanent,
        }
    }
}

/// A validated message ready to store: its document, and what the device state
/// needs. The parsed body is not kept (BENCHMARKS.md: memory per message).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub key: String,
    pub device_id: String,
    pub ts: DateTime<Utc>,
    pub seq: Option<u64>,
    pub doc: RawDocumentBuf,
}

impl Prepared {
    pub fn new(key: String, t: &Telemetry, now: DateTime<Utc>) -> Result<Self, Violation> {
        Ok(Self {
            doc: telemetry::document::to_document(&key, t, now)?,
            key,
            device_id: t.device_id.clone(),
            ts: t.ts,
            seq: t.seq,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub inserted: usize,
    pub duplicates: usize,
}

#[derive(Clone)]
pub struct Store {
    client: Client,
    telemetry: Collection<RawDocumentBuf>,
    devices_db: Database,
    devices_name: String,
}

impl Store {
    pub async fn connect(
        uri: &str,
        database: &str,
        collection: &str,
        devices: &str,
    ) -> Result<Self, StoreError> {
        let mut opts = ClientOptions::parse(uri)
            .await
            .map_err(|e| StoreError::Config(redact(&e)))?;
        opts.app_name = Some("iot-bridge-writer".into());
        opts.server_selection_timeout = Some(Duration::from_secs(10));
        opts.write_concern = Some(WriteConcern::majority());
        let client = Client::with_options(opts).map_err(|e| StoreError::Config(redact(&e)))?;
        let db = client.database(database);
        Ok(Self {
            telemetry: db.collection(collection),
            devices_name: devices.to_owned(),
            devices_db: db,
            client,
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .map(drop)
            .map_err(classify)
    }

    /// Idempotent: `{deviceId: 1, ts: -1}` always; a TTL on `ts` exactly when a retention is set.
    /// Also creates the devices collection: created implicitly inside concurrent
    /// transactions, it makes every one but the first fail with WriteConflict.
    pub async fn ensure_indexes(&self, retention_days: Option<u32>) -> Result<(), StoreError> {
        match self.devices_db.create_collection(&self.devices_name).await {
            Err(e) if matches!(*e.kind, ErrorKind::Command(ref c) if c.code == NAMESPACE_EXISTS) => {
            }
            other => other.map_err(classify)?,
        }
        let by_device = IndexModel::builder()
            .keys(doc! {"deviceId": 1, "ts": -1})
            .options(
                IndexOptions::builder()
                    .name("deviceId_ts".to_owned())
                    .build(),
            )
            .build();
        self.telemetry
            .create_index(by_device)
            .await
            .map_err(classify)?;
        let existing = self.telemetry.list_index_names().await.map_err(classify)?;
        let has_ttl = existing.iter().any(|n| n == TTL_INDEX);
        if has_ttl {
            // Dropped and rebuilt so a changed retention takes effect (createIndex refuses new options).
            self.telemetry
                .drop_index(TTL_INDEX)
                .await
                .map_err(classify)?;
        }
        if let Some(days) = retention_days {
            let ttl = IndexModel::builder()
                .keys(doc! {"ts": 1})
                .options(
                    IndexOptions::builder()
                        .name(TTL_INDEX.to_owned())
                        .expire_after(Duration::from_secs(u64::from(days) * 86_400))
                        .build(),
                )
                .build();
            self.telemetry.create_index(ttl).await.map_err(classify)?;
        } else if has_ttl {
            tracing::warn!(
                "RETENTION_DAYS is unset: dropped the TTL index, telemetry is now kept forever"
            );
        }
        Ok(())
    }

    /// Moves device state written before `last` existed (flat `lastTs`, `lastSeq`,
    /// `lastKey`, `lastReadings`) into `last`, so that `$max` compares against it.
    /// Idempotent: it matches only documents without `last`. It scans `devices` (one
    /// document per device) once per start.
    pub async fn migrate_device_state(&self) -> Result<u64, StoreError> {
        let flat = ["lastTs", "lastSeq", "lastKey", "lastReadings"];
        let pipeline = vec![
            doc! {"$set": {"last": {
                "ts": "$lastTs",
                "seq": {"$ifNull": ["$lastSeq", Bson::Null]},
                "key": "$lastKey",
                "readings": {"$ifNull": ["$lastReadings", Bson::Null]},
            }}},
            doc! {"$unset": flat.to_vec()},
        ];
        let migrated = self
            .devices_db
            .collection::<Document>(&self.devices_name)
            .update_many(
                doc! {"last": {"$exists": false}, "lastTs": {"$exists": true}},
                pipeline,
            )
            .await
            .map_err(classify)?
            .modified_count;
        if migrated > 0 {
            tracing::info!(migrated, "device state moved into `last`");
        }
        Ok(migrated)
    }

    /// Stores the batch exactly once. Optimistic: the whole batch and its
    /// device-state changes commit in one transaction. A duplicate key aborts that
    /// transaction (redelivery: rare), and then the batch is written again without
    /// the documents already present. Either way a retry after any failure can
    /// neither lose nor double-count anything.
    pub async fn write(&self, items: &[Prepared]) -> Result<WriteStats, StoreError> {
        let all: Vec<(usize, &Prepared)> = items.iter().enumerate().collect();
        if all.is_empty() {
            return Ok(WriteStats::default());
        }
        if !self.commit(&all).await? {
            return Ok(WriteStats {
                inserted: items.len(),
                duplicates: 0,
            });
        }
        let existing = self.existing_ids(items).await?;
        let fresh: Vec<(usize, &Prepared)> = all
            .into_iter()
            .filter(|(_, p)| !existing.contains(&p.key))
            .collect();
        // A duplicate now means another writer stored it meanwhile (a rebalance): retried.
        if !fresh.is_empty() && self.commit(&fresh).await? {
            return Err(StoreError::Transient(
                "duplicate key after excluding existing documents; retrying".into(),
            ));
        }
        Ok(WriteStats {
            inserted: fresh.len(),
            duplicates: items.len() - fresh.len(),
        })
    }

    async fn existing_ids(&self, items: &[Prepared]) -> Result<HashSet<String>, StoreError> {
        let ids: Vec<&str> = items.iter().map(|p| p.key.as_str()).collect();
        Ok(self
            .telemetry
            .find(doc! {"_id": {"$in": &ids}})
            .projection(doc! {"_id": 1})
            .await
            .map_err(classify)?
            .try_collect::<Vec<RawDocumentBuf>>()
            .await
            .map_err(classify)?
            .into_iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect())
    }

    /// One transaction: insert `fresh`, apply its device deltas, commit. Returns
    /// whether it was aborted because some document already exists.
    async fn commit(&self, fresh: &[(usize, &Prepared)]) -> Result<bool, StoreError> {
        let mut session = self.client.start_session().await.map_err(classify)?;
        session
            .start_transaction()
            .write_concern(WriteConcern::majority())
            .await
            .map_err(classify)?;
        let result = async {
            let inserted = self
                .telemetry
                .insert_many(fresh.iter().map(|(_, p)| &p.doc))
                .session(&mut session)
                .await;
            match inserted.map_err(|e| classify_insert(e, fresh)) {
                Err(InsertFailure::Duplicate) => return Ok(true),
                Err(InsertFailure::Store(e)) => return Err(e),
                Ok(_) => {}
            }
            // All device deltas in one `update` command: one round trip per batch
            // instead of two per device (BENCHMARKS.md has the measurements).
            let updates = devices::update_statements(
                &devices::deltas(fresh.iter().map(|(_, p)| *p)),
                Utc::now(),
            );
            let reply = self
                .devices_db
                .run_raw_command(
                    rawdoc! {"update": self.devices_name.as_str(), "updates": updates, "ordered": true},
                )
                .session(&mut session)
                .await
                .map_err(classify)?;
            check_write_errors(&reply)?;
            session.commit_transaction().await.map_err(classify)?;
            Ok(false)
        }
        .await;
        if !matches!(result, Ok(false)) {
            // Fails harmlessly when the server already aborted it.
            let _ = session.abort_transaction().await;
        }
        result
    }
}

enum InsertFailure {
    /// Only duplicate keys: the documents are already stored.
    Duplicate,
    Store(StoreError),
}

/// A per-document refusal names its document (by index into the batch); only
/// duplicate keys mean "already stored"; anything else is systemic and retried.
fn classify_insert(e: MongoError, fresh: &[(usize, &Prepared)]) -> InsertFailure {
    if let ErrorKind::InsertMany(ref many) = *e.kind
        && let Some(errors) = many.write_errors.as_ref().filter(|w| !w.is_empty())
    {
        return match errors.iter().find(|w| w.code != DUPLICATE_KEY) {
            None => InsertFailure::Duplicate,
            Some(bad) => match fresh.get(bad.index) {
                Some((original, _)) => InsertFailure::Store(StoreError::Rejected {
                    index: *original,
                    code: bad.code,
                    message: bad.message.clone(),
                }),
                None => InsertFailure::Store(classify(e.clone())),
            },
        };
    }
    if let ErrorKind::Command(ref c) = *e.kind
        && c.code == DUPLICATE_KEY
    {
        return InsertFailure::Duplicate;
    }
    InsertFailure::Store(classify(e))
}

/// `update` reports failed statements in its reply, not as a command error.
/// A device update is ours, not the device's: systemic, so retried (and alarmed on).
fn check_write_errors(reply: &Document) -> Result<(), StoreError> {
    match reply.get_array("writeErrors") {
        Ok(errors) if !errors.is_empty() => Err(StoreError::Transient(format!(
            "devices update refused: {}",
            Bson::Array(errors.clone())
        ))),
        _ => Ok(()),
    }
}

/// Only a per-document refusal is permanent; whatever else fails will work again
/// once MongoDB does, so it is retried (and alarmed on through WriteRetries).
fn classify(e: MongoError) -> StoreError {
    StoreError::Transient(redact(&e))
}

/// Driver errors can quote the connection string; never let credentials into logs.
fn redact(e: &MongoError) -> String {
    let text = e.to_string();
    match (text.find("://"), text.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &text[..scheme], &text[at..])
        }
        _ => text,
    }
}
