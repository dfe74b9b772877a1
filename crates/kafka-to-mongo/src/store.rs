//! MongoDB: the telemetry collection (one document per idempotency key) and the
//! devices collection, written together in one transaction per batch. Every call
//! has a deadline ([`error::deadline`]); errors are classified by code ([`error`]).

use std::collections::HashSet;
use std::time::Duration;

use bson::raw::RawDocumentBuf;
use bson::{Bson, Document, doc, rawdoc};
use chrono::Utc;
use futures::TryStreamExt as _;
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, CollectionOptions, IndexOptions, ReadConcern, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use telemetry::document::Prepared;

use bridge_common::mongo::{DUPLICATE_KEY, NAMESPACE_EXISTS, redact};

use crate::devices;
use crate::error::{
    Cause, INDEX_KEY_SPECS_CONFLICT, INDEX_NOT_FOUND, INDEX_OPTIONS_CONFLICT, StoreError,
    TOO_LARGE, classify, deadline, is_permanent_code,
};

const TTL_INDEX: &str = "ts_ttl";
/// The default deadline of one MongoDB call (MONGODB_TIMEOUT_MS).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// One `update` command of device statements stays well under the 16 MiB BSON limit.
const MAX_UPDATE_COMMAND_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub inserted: usize,
    pub duplicates: usize,
}

#[derive(Clone)]
pub struct Store {
    client: Client,
    telemetry: Collection<RawDocumentBuf>,
    /// The same collection read with majority concern: only what survives a failover counts as stored.
    telemetry_majority: Collection<RawDocumentBuf>,
    devices_db: Database,
    devices_name: String,
    timeout: Duration,
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
        opts.connect_timeout = Some(Duration::from_secs(10));
        let client = Client::with_options(opts).map_err(|e| StoreError::Config(redact(&e)))?;
        Ok(Self::from_client(client, database, collection, devices))
    }

    /// A store on a client built elsewhere (tests add command monitoring this way).
    pub fn from_client(client: Client, database: &str, collection: &str, devices: &str) -> Self {
        let db = client.database(database);
        let majority = CollectionOptions::builder()
            .read_concern(ReadConcern::majority())
            .build();
        Self {
            telemetry: db.collection(collection),
            telemetry_majority: db.collection_with_options(collection, majority),
            devices_name: devices.to_owned(),
            devices_db: db,
            client,
            timeout: DEFAULT_TIMEOUT,
        }
        .with_timeout(DEFAULT_TIMEOUT)
    }

    /// Every MongoDB call gets this deadline, and majority writes this `wtimeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn write_concern(&self) -> WriteConcern {
        WriteConcern::builder()
            .w(mongodb::options::Acknowledgment::Majority)
            .w_timeout(self.timeout)
            .build()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let admin = self.client.database("admin");
        deadline("ping", self.timeout, admin.run_command(doc! {"ping": 1}))
            .await
            .map(drop)
    }

    /// Idempotent, and safe when several writers start at once: `{deviceId: 1, ts: -1}`
    /// always; a TTL on `ts` exactly when a retention is set. A changed retention is
    /// applied in place (`collMod`), never by dropping and rebuilding the index.
    /// Also creates the devices collection: created implicitly inside concurrent
    /// transactions, it makes every one but the first fail with WriteConflict.
    pub async fn ensure_indexes(&self, retention_days: Option<u32>) -> Result<(), StoreError> {
        let t = self.timeout;
        self.ensure_devices().await?;
        let by_device = IndexModel::builder()
            .keys(doc! {"deviceId": 1, "ts": -1})
            .options(
                IndexOptions::builder()
                    .name("deviceId_ts".to_owned())
                    .build(),
            )
            .build();
        deadline("createIndexes", t, self.telemetry.create_index(by_device)).await?;
        let want = retention_days.map(|d| i64::from(d) * 86_400);
        let have = self.ttl_seconds().await?;
        match (have, want) {
            (None, None) => Ok(()),
            (Some(have), Some(want)) if have == want => Ok(()),
            (None, Some(want)) => self.create_ttl(want).await,
            (Some(_), Some(want)) => self.set_ttl(want).await,
            (Some(_), None) => {
                match deadline("dropIndexes", t, self.telemetry.drop_index(TTL_INDEX)).await {
                    // Another writer starting at the same time dropped it first.
                    Err(e) if code(&e) == Some(INDEX_NOT_FOUND) => {}
                    other => other?,
                }
                tracing::warn!(
                    "RETENTION_DAYS is unset: dropped the TTL index, telemetry is now kept forever"
                );
                Ok(())
            }
        }
    }

    /// Creates the devices collection (both modes): created implicitly inside
    /// concurrent transactions, it makes every one but the first fail with WriteConflict.
    pub async fn ensure_devices(&self) -> Result<(), StoreError> {
        let create = self.devices_db.create_collection(&self.devices_name);
        match deadline("create", self.timeout, create).await {
            Err(e) if code(&e) == Some(NAMESPACE_EXISTS) => Ok(()),
            other => other,
        }
    }

    async fn ttl_seconds(&self) -> Result<Option<i64>, StoreError> {
        let indexes: Vec<IndexModel> = deadline("listIndexes", self.timeout, async {
            self.telemetry.list_indexes().await?.try_collect().await
        })
        .await?;
        Ok(indexes
            .iter()
            .filter_map(|i| i.options.as_ref())
            .find(|o| o.name.as_deref() == Some(TTL_INDEX))
            .map(|o| o.expire_after.map_or(-1, |d| d.as_secs() as i64)))
    }

    async fn create_ttl(&self, seconds: i64) -> Result<(), StoreError> {
        let ttl = IndexModel::builder()
            .keys(doc! {"ts": 1})
            .options(
                IndexOptions::builder()
                    .name(TTL_INDEX.to_owned())
                    .expire_after(Duration::from_secs(seconds.max(0) as u64))
                    .build(),
            )
            .build();
        match deadline(
            "createIndexes",
            self.timeout,
            self.telemetry.create_index(ttl),
        )
        .await
        {
            // Another writer created it at the same time, with its own retention: set ours.
            Err(e)
                if matches!(
                    code(&e),
                    Some(INDEX_OPTIONS_CONFLICT | INDEX_KEY_SPECS_CONFLICT)
                ) =>
            {
                self.set_ttl(seconds).await
            }
            other => other.map(drop),
        }
    }

    async fn set_ttl(&self, seconds: i64) -> Result<(), StoreError> {
        let command = doc! {
            "collMod": self.telemetry.name(),
            "index": {"name": TTL_INDEX, "expireAfterSeconds": seconds},
        };
        deadline(
            "collMod",
            self.timeout,
            self.devices_db.run_command(command),
        )
        .await?;
        tracing::info!(expire_after_s = seconds, "TTL on ts changed in place");
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
        let devices = self.devices_db.collection::<Document>(&self.devices_name);
        let update = devices.update_many(
            doc! {"last": {"$exists": false}, "lastTs": {"$exists": true}},
            pipeline,
        );
        let migrated = deadline("update", self.timeout, update)
            .await?
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
            return Err(StoreError::Unavailable {
                op: "insert",
                cause: Cause {
                    code: Some(DUPLICATE_KEY),
                    labels: Vec::new(),
                    message: "duplicate key after excluding existing documents; retrying".into(),
                },
            });
        }
        Ok(WriteStats {
            inserted: fresh.len(),
            duplicates: items.len() - fresh.len(),
        })
    }

    /// Majority read: a document only a local read sees could be rolled back by a
    /// failover after the offset past it is committed.
    async fn existing_ids(&self, items: &[Prepared]) -> Result<HashSet<String>, StoreError> {
        let ids: Vec<&str> = items.iter().map(|p| p.key.as_str()).collect();
        let found: Vec<RawDocumentBuf> = deadline("find", self.timeout, async {
            self.telemetry_majority
                .find(doc! {"_id": {"$in": &ids}})
                .projection(doc! {"_id": 1})
                .await?
                .try_collect()
                .await
        })
        .await?;
        Ok(found
            .into_iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect())
    }

    /// One transaction: insert `fresh`, apply its device deltas, commit. Returns
    /// whether it was aborted because some document already exists.
    async fn commit(&self, fresh: &[(usize, &Prepared)]) -> Result<bool, StoreError> {
        let t = self.timeout;
        let mut session = self.transaction().await?;
        let result = async {
            let insert = self
                .telemetry
                .insert_many(fresh.iter().map(|(_, p)| &p.doc))
                .session(&mut session);
            match tokio::time::timeout(t, insert).await {
                Err(_) => {
                    return Err(StoreError::Timeout {
                        op: "insert",
                        after: t,
                    });
                }
                Ok(Err(e)) => match classify_insert(e, fresh) {
                    InsertFailure::Duplicate => return Ok(true),
                    InsertFailure::Store(e) => return Err(e),
                },
                Ok(Ok(_)) => {}
            }
            self.apply_devices(&mut session, fresh.iter().map(|(_, p)| *p), None)
                .await?;
            deadline("commitTransaction", t, session.commit_transaction()).await?;
            Ok(false)
        }
        .await;
        if !matches!(result, Ok(false)) {
            // Fails harmlessly when the server already aborted it.
            let _ = tokio::time::timeout(t, session.abort_transaction()).await;
        }
        result
    }
}

impl Store {
    pub(crate) fn database(&self) -> &Database {
        &self.devices_db
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn devices_name(&self) -> &str {
        &self.devices_name
    }

    pub(crate) fn majority(&self) -> WriteConcern {
        self.write_concern()
    }

    /// Opens a session and starts a majority-committed transaction in it.
    pub(crate) async fn transaction(&self) -> Result<mongodb::ClientSession, StoreError> {
        let mut session =
            deadline("startSession", self.timeout, self.client.start_session()).await?;
        session
            .start_transaction()
            .write_concern(self.write_concern())
            .await
            .map_err(|e| classify("startTransaction", e))?;
        Ok(session)
    }

    /// The device-state changes of `items`, inside the session's transaction: all
    /// device deltas in as few `update` commands as fit, one round trip per batch
    /// instead of two per device (BENCHMARKS.md), never over 16 MiB.
    pub(crate) async fn apply_devices<'a>(
        &self,
        session: &mut mongodb::ClientSession,
        items: impl IntoIterator<Item = &'a Prepared>,
        partition: Option<i32>,
    ) -> Result<(), StoreError> {
        let mut deltas = devices::deltas(items);
        for d in &mut deltas {
            d.partition = partition;
        }
        for chunk in devices::chunks(&deltas, Utc::now(), MAX_UPDATE_COMMAND_BYTES) {
            let command = rawdoc! {
                "update": self.devices_name.as_str(),
                "updates": chunk.statements,
                "ordered": true,
            };
            let run = self
                .devices_db
                .run_raw_command(command)
                .session(&mut *session);
            let reply = deadline("update", self.timeout, run).await?;
            check_write_errors(&reply, &deltas[chunk.first..])?;
        }
        Ok(())
    }
}

pub(crate) fn code(e: &StoreError) -> Option<i32> {
    match e {
        StoreError::Unavailable { cause, .. } | StoreError::Refused { cause, .. } => cause.code,
        _ => None,
    }
}

pub(crate) enum InsertFailure {
    /// Only duplicate keys: the documents are already stored.
    Duplicate,
    Store(StoreError),
}

/// A per-document refusal names its document (by index into the batch); only
/// duplicate keys mean "already stored"; anything else is classified by code.
pub(crate) fn classify_insert(
    e: mongodb::error::Error,
    fresh: &[(usize, &Prepared)],
) -> InsertFailure {
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
                None => InsertFailure::Store(classify("insert", e.clone())),
            },
        };
    }
    if let ErrorKind::Command(ref c) = *e.kind
        && c.code == DUPLICATE_KEY
    {
        return InsertFailure::Duplicate;
    }
    InsertFailure::Store(classify("insert", e))
}

/// `update` reports failed statements in its reply, not as a command error. A
/// refusal names its statement, so its device: that device's messages cannot be
/// stored with their state (the worker dead-letters them, the rest go on).
fn check_write_errors(reply: &Document, deltas: &[devices::DeviceDelta]) -> Result<(), StoreError> {
    let Ok(errors) = reply.get_array("writeErrors") else {
        return Ok(());
    };
    let Some(first) = errors.iter().find_map(Bson::as_document) else {
        return Ok(());
    };
    let code = first.get_i32("code").unwrap_or_default();
    let message = first.get_str("errmsg").unwrap_or_default().to_owned();
    let index = first.get_i32("index").unwrap_or_default().max(0) as usize;
    let cause = || Cause {
        code: Some(code),
        labels: Vec::new(),
        message: message.clone(),
    };
    // Too large is about the batch (split it); only a permanent code is about the
    // device; anything else (a write conflict, say) passes and is retried.
    if TOO_LARGE.contains(&code) {
        return Err(StoreError::TooLarge { op: "update", code });
    }
    if !is_permanent_code(code) {
        return Err(StoreError::Unavailable {
            op: "update",
            cause: cause(),
        });
    }
    match deltas.get(index) {
        Some(d) => Err(StoreError::DeviceRefused {
            device_id: d.device_id.clone(),
            code,
            message,
        }),
        None => Err(StoreError::Refused {
            op: "update",
            cause: cause(),
        }),
    }
}
