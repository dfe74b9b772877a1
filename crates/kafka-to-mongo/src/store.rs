//! MongoDB: the telemetry collection (one document per idempotency key) and the
//! devices collection, written together in one transaction per batch.

use std::collections::HashSet;
use std::time::Duration;

use bson::{Document, doc};
use chrono::Utc;
use futures::TryStreamExt as _;
use mongodb::error::{Error as MongoError, ErrorKind};
use mongodb::options::{ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, IndexModel};
use telemetry::{Classify, Retry, Telemetry};

use crate::devices;

const DUPLICATE_KEY: i32 = 11_000;
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

/// A validated message ready to store.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub key: String,
    pub telemetry: Telemetry,
    pub doc: Document,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub inserted: usize,
    pub duplicates: usize,
}

#[derive(Clone)]
pub struct Store {
    client: Client,
    telemetry: Collection<Document>,
    devices: Collection<Document>,
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
            devices: db.collection(devices),
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
    pub async fn ensure_indexes(&self, retention_days: Option<u32>) -> Result<(), StoreError> {
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

    /// Stores the batch exactly once: documents already present are duplicates;
    /// the rest and their device-state changes commit in one transaction, so a
    /// retry after any failure can neither lose nor double-count anything.
    pub async fn write(&self, items: &[Prepared]) -> Result<WriteStats, StoreError> {
        let ids: Vec<&str> = items.iter().map(|p| p.key.as_str()).collect();
        let existing: HashSet<String> = self
            .telemetry
            .find(doc! {"_id": {"$in": &ids}})
            .projection(doc! {"_id": 1})
            .await
            .map_err(classify)?
            .try_collect::<Vec<Document>>()
            .await
            .map_err(classify)?
            .into_iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect();
        let fresh: Vec<(usize, &Prepared)> = items
            .iter()
            .enumerate()
            .filter(|(_, p)| !existing.contains(&p.key))
            .collect();
        let stats = WriteStats {
            inserted: fresh.len(),
            duplicates: items.len() - fresh.len(),
        };
        if fresh.is_empty() {
            return Ok(stats);
        }

        let mut session = self.client.start_session().await.map_err(classify)?;
        session
            .start_transaction()
            .write_concern(WriteConcern::majority())
            .await
            .map_err(classify)?;
        let result = async {
            self.telemetry
                .insert_many(fresh.iter().map(|(_, p)| &p.doc))
                .session(&mut session)
                .await
                .map_err(|e| classify_insert(e, &fresh))?;
            // Two round trips per device. One client.bulk_write in the transaction is the obvious next
            // step; its only measurement so far was confounded by a starved consumer (see BENCHMARKS.md).
            let now = Utc::now();
            for d in devices::deltas(fresh.iter().map(|(_, p)| (p.key.as_str(), &p.telemetry))) {
                let (filter, update) = d.count_update(now);
                self.devices
                    .update_one(filter, update)
                    .upsert(true)
                    .session(&mut session)
                    .await
                    .map_err(classify)?;
                let (filter, update) = d.state_update();
                self.devices
                    .update_one(filter, update)
                    .session(&mut session)
                    .await
                    .map_err(classify)?;
            }
            session.commit_transaction().await.map_err(classify)
        }
        .await;
        if result.is_err() {
            // Fails harmlessly when the server already aborted it.
            let _ = session.abort_transaction().await;
        }
        result.map(|()| stats)
    }
}

/// A per-document refusal names its document (by index into `items`); a
/// duplicate key means another writer got there first, so the batch is retried
/// and the re-check finds it; anything else is systemic and retried.
fn classify_insert(e: MongoError, fresh: &[(usize, &Prepared)]) -> StoreError {
    if let ErrorKind::InsertMany(ref many) = *e.kind
        && let Some(bad) = many
            .write_errors
            .iter()
            .flatten()
            .find(|w| w.code != DUPLICATE_KEY)
        && let Some((original, _)) = fresh.get(bad.index)
    {
        return StoreError::Rejected {
            index: *original,
            code: bad.code,
            message: bad.message.clone(),
        };
    }
    classify(e)
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
