//! The checkpoint of a migration (one document in the regular collection
//! `migrations`, keyed `"<from> -> <to>"`) and the hold of one run at a time on it:
//! `owner` and `heartbeatAt`, refreshed by every checkpoint write, taken over once
//! stale, released at the end of a run.

use std::time::Duration;

use bridge_common::mongo::{DUPLICATE_KEY, deadline};
use bson::{Bson, Document, doc};
use mongodb::Collection;
use mongodb::options::ReturnDocument;

use super::args::MigrateArgs;

/// The regular collection holding one checkpoint per migration.
pub const CHECKPOINTS: &str = "migrations";

/// A migration's progress, as stored in `migrations`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// 0: no pass has started.
    pub pass: i64,
    pub pass_started_at: Option<bson::DateTime>,
    pub last_id: Option<Bson>,
    /// Counters of the current pass.
    pub copied: i64,
    pub present: i64,
    pub skipped: i64,
    pub done: bool,
}

impl Checkpoint {
    pub fn from_doc(d: &Document) -> Self {
        let int = |k: &str| d.get_i64(k).unwrap_or(0);
        Self {
            pass: int("pass"),
            pass_started_at: d.get_datetime("passStartedAt").ok().copied(),
            last_id: d.get("lastId").filter(|v| **v != Bson::Null).cloned(),
            copied: int("copied"),
            present: int("present"),
            skipped: int("skipped"),
            done: d.get_bool("done").unwrap_or(false),
        }
    }

    /// Where this run starts: a pass in progress resumes after its `lastId`; a
    /// finished pass, no pass, or `--from-start` starts a new pass. Returns whether
    /// it resumes.
    pub fn start(&self, from_start: bool, now: bson::DateTime) -> (Checkpoint, bool) {
        if from_start || self.pass == 0 || self.done {
            let next = Checkpoint {
                pass: self.pass + 1,
                pass_started_at: Some(now),
                ..Checkpoint::default()
            };
            (next, false)
        } else {
            (self.clone(), true)
        }
    }

    /// Documents of this pass handled so far.
    pub fn handled(&self) -> u64 {
        u64::try_from(self.copied + self.present + self.skipped).unwrap_or(0)
    }

    fn set(&self, from: &str, to: &str, now: bson::DateTime) -> Document {
        doc! {
            "from": from,
            "to": to,
            "pass": self.pass,
            "passStartedAt": self.pass_started_at.map_or(Bson::Null, Bson::DateTime),
            "lastId": self.last_id.clone().unwrap_or(Bson::Null),
            "copied": self.copied,
            "present": self.present,
            "skipped": self.skipped,
            "done": self.done,
            "updatedAt": now,
            "heartbeatAt": now,
        }
    }
}

/// Who runs this migration (the checkpoint's `owner`).
pub fn owner() -> Document {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".into());
    doc! {
        "run": format!("{}-{nanos:x}", std::process::id()),
        "pid": i64::from(std::process::id()),
        "host": host,
        "since": bson::DateTime::now(),
    }
}

/// Takes the migration for this run: refused while another run's heartbeat is
/// younger than `stale`. Returns the checkpoint document.
pub async fn claim(
    checkpoints: &Collection<Document>,
    key: &str,
    owner: &Document,
    stale: Duration,
    t: Duration,
) -> anyhow::Result<Document> {
    for _ in 0..2 {
        let now = bson::DateTime::now();
        let cutoff = bson::DateTime::from_millis(
            now.timestamp_millis() - i64::try_from(stale.as_millis()).unwrap_or(i64::MAX),
        );
        let filter = doc! {"_id": key, "$or": [
            {"owner": {"$exists": false}},
            {"owner": Bson::Null},
            {"heartbeatAt": {"$lt": cutoff}},
        ]};
        let update = doc! {"$set": {"owner": owner.clone(), "heartbeatAt": now}};
        let take = checkpoints
            .find_one_and_update(filter, update)
            .upsert(true)
            .return_document(ReturnDocument::After);
        match deadline("findAndModify", t, take).await {
            Ok(Some(doc)) => return Ok(doc),
            Ok(None) => anyhow::bail!("the checkpoint upsert of {key} returned nothing"),
            // Held by another run, or two claims raced on the upsert: look again once.
            Err(e) if e.code() == Some(DUPLICATE_KEY) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let held = deadline("find", t, checkpoints.find_one(doc! {"_id": key}))
        .await?
        .unwrap_or_default();
    let who = held
        .get_document("owner")
        .map(|o| {
            format!(
                "pid {} on {}",
                o.get_i64("pid").unwrap_or_default(),
                o.get_str("host").unwrap_or("?")
            )
        })
        .unwrap_or_else(|_| "another run".into());
    let seen = held
        .get_datetime("heartbeatAt")
        .map(|d| d.try_to_rfc3339_string().unwrap_or_default())
        .unwrap_or_default();
    anyhow::bail!(
        "migration {key} is held by {who} (last heartbeat {seen}): another run is in progress. If it died, a run started {} s after its last heartbeat takes over",
        stale.as_secs()
    )
}

/// The checkpoint, written only while this run holds the migration.
pub async fn write_checkpoint(
    checkpoints: &Collection<Document>,
    key: &str,
    run_id: &str,
    c: &Checkpoint,
    args: &MigrateArgs,
    t: Duration,
) -> anyhow::Result<()> {
    let write = checkpoints.update_one(
        doc! {"_id": key, "owner.run": run_id},
        doc! {"$set": c.set(&args.from, &args.to, bson::DateTime::now())},
    );
    let r = deadline("update", t, write).await?;
    anyhow::ensure!(
        r.matched_count == 1,
        "another run took migration {key} over (this one was silent too long): stopping"
    );
    Ok(())
}

/// Lets the next run in at once (best effort: a stale claim is taken over anyway).
pub async fn release(checkpoints: &Collection<Document>, key: &str, run_id: &str, t: Duration) {
    let release = checkpoints.update_one(
        doc! {"_id": key, "owner.run": run_id},
        doc! {"$unset": {"owner": "", "heartbeatAt": ""}},
    );
    if let Err(e) = deadline("update", t, release).await {
        tracing::warn!(error = %e, "could not release the migration's claim");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> bson::DateTime {
        bson::DateTime::from_millis(ms)
    }

    #[test]
    fn a_pass_in_progress_resumes_and_a_finished_one_starts_over() {
        let now = at(9_000);
        let fresh = Checkpoint::from_doc(&doc! {"_id": "a -> b", "owner": {"run": "x"}});
        let (c, resumed) = fresh.start(false, now);
        assert!(!resumed);
        assert_eq!(
            (c.pass, c.last_id.clone(), c.pass_started_at),
            (1, None, Some(now))
        );

        let stored = doc! {"pass": 1_i64, "passStartedAt": at(1), "lastId": "k#seq:9",
        "copied": 10_i64, "present": 2_i64, "skipped": 1_i64, "done": false};
        let mid = Checkpoint::from_doc(&stored);
        assert_eq!(mid.handled(), 13);
        let (c, resumed) = mid.start(false, now);
        assert!(resumed);
        assert_eq!(c, mid);
        assert_eq!(
            Checkpoint::from_doc(&c.set("a", "b", now)),
            mid,
            "what is written reads back the same"
        );
        let (c, resumed) = mid.start(true, now);
        assert!(!resumed, "--from-start ignores the checkpoint");
        assert_eq!((c.pass, c.last_id, c.copied), (2, None, 0));

        let done = Checkpoint { done: true, ..mid };
        let (c, resumed) = done.start(false, now);
        assert!(!resumed, "a finished pass is never resumed");
        assert_eq!((c.pass, c.last_id, c.done), (2, None, false));
    }
}
