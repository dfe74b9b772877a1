//! The writer's MongoDB errors, classified by the server's codes and labels and
//! the driver's error kinds, never by message text.

use std::time::Duration;

use bridge_common::mongo::{CallError, code_of, redact};
use mongodb::error::Error as MongoError;
use telemetry::{Classify, Retry};

/// Codes of a batch that cannot be written as one unit, whatever its documents:
/// split it (TransactionTooLarge, TransactionTooLargeForCache, BSONObjectTooLarge).
pub const TOO_LARGE: [i32; 3] = [257, 388, 10_334];
pub const INDEX_NOT_FOUND: i32 = 27;
pub const INDEX_OPTIONS_CONFLICT: i32 = 85;
pub const INDEX_KEY_SPECS_CONFLICT: i32 = 86;

/// Server codes that are about the command, not about an outage: retrying the same
/// command gets the same answer (bad value, type mismatch, validation, unauthorized).
const PERMANENT: [i32; 9] = [2, 9, 13, 14, 17, 52, 66, 121, 16_755];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// MongoDB did not answer within its deadline (a hung server, a black-holed route).
    #[error("MongoDB {op}: no answer within {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// Network, no primary, write conflicts, a write concern not yet satisfied: the
    /// same batch will succeed later.
    #[error("MongoDB {op} unavailable: {cause}")]
    Unavailable { op: &'static str, cause: Cause },
    /// MongoDB refused one document (a collection validator, say): it can never be stored.
    #[error("MongoDB rejected document #{index}: error {code}: {message}")]
    Rejected {
        index: usize,
        code: i32,
        message: String,
    },
    /// A batch of several documents got no answer within the deadline: split it, so
    /// that work too slow for one deadline becomes smaller work instead of a loop.
    #[error("MongoDB {op}: no answer within {after:?} for a batch; splitting it")]
    TooSlow { op: &'static str, after: Duration },
    /// The batch is too large for one command or transaction: split it.
    #[error("MongoDB {op}: batch too large (error {code})")]
    TooLarge { op: &'static str, code: i32 },
    /// The device-state update of one device is refused (a validator on `devices`, a
    /// wrong-typed `count`): that device's messages of the batch cannot be stored.
    #[error("MongoDB refused the device state of {device_id}: error {code}: {message}")]
    DeviceRefused {
        device_id: String,
        code: i32,
        message: String,
    },
    /// A refusal that names no document: the same command fails forever.
    #[error("MongoDB {op} refused: {cause}")]
    Refused { op: &'static str, cause: Cause },
    #[error("MongoDB configuration: {0}")]
    Config(String),
    /// Another writer claimed the partition (a newer lease epoch): this one lost it
    /// to a rebalance while paused or cut off, and must not write for it again.
    #[error(
        "partition {partition} fenced: this writer holds epoch {epoch}, the lease holds {current:?}"
    )]
    Fenced {
        partition: i32,
        epoch: i64,
        current: Option<i64>,
    },
}

/// What the driver said, kept typed: the server code and labels when there are
/// any, and the (redacted) text for people.
#[derive(Debug, Clone)]
pub struct Cause {
    pub code: Option<i32>,
    pub labels: Vec<String>,
    pub message: String,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "error {code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Classify for StoreError {
    fn retry(&self) -> Retry {
        match self {
            StoreError::Timeout { .. } | StoreError::Unavailable { .. } => Retry::Transient,
            StoreError::Rejected { .. }
            | StoreError::TooLarge { .. }
            | StoreError::TooSlow { .. }
            | StoreError::DeviceRefused { .. }
            | StoreError::Refused { .. }
            | StoreError::Config(_)
            | StoreError::Fenced { .. } => Retry::Permanent,
        }
    }
}

/// Whether a server code says the command itself is wrong (retrying gets the same answer).
pub fn is_permanent_code(code: i32) -> bool {
    PERMANENT.contains(&code)
}

/// Transient unless the server said something about the command itself: a
/// too-large batch (split), or a code in the permanent list. Anything else that
/// failed, the network, selection, a primary stepping down, a label saying so,
/// will work again once MongoDB does, and is retried (and alarmed on).
pub fn classify(op: &'static str, e: MongoError) -> StoreError {
    let code = code_of(&e);
    if let Some(code) = code.filter(|c| TOO_LARGE.contains(c)) {
        return StoreError::TooLarge { op, code };
    }
    let labelled_transient = e.contains_label("TransientTransactionError")
        || e.contains_label("UnknownTransactionCommitResult")
        || e.contains_label("RetryableWriteError");
    let cause = Cause {
        code,
        labels: e.labels().iter().cloned().collect(),
        message: redact(&e),
    };
    match code {
        Some(c) if PERMANENT.contains(&c) && !labelled_transient => {
            StoreError::Refused { op, cause }
        }
        _ => StoreError::Unavailable { op, cause },
    }
}

impl From<CallError> for StoreError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Timeout { op, after } => StoreError::Timeout { op, after },
            CallError::Failed { op, error } => classify(op, error),
        }
    }
}

/// Runs `fut` with a deadline: past it, a transient [`StoreError::Timeout`]; a
/// failure is classified.
pub async fn deadline<T>(
    op: &'static str,
    after: Duration,
    fut: impl IntoFuture<Output = Result<T, MongoError>>,
) -> Result<T, StoreError> {
    Ok(bridge_common::mongo::deadline(op, after, fut).await?)
}

#[cfg(test)]
mod tests {
    use mongodb::error::ErrorKind;

    use super::*;

    fn command_error(code: i32) -> MongoError {
        let reply = bson::doc! {"ok": 0, "code": code, "codeName": "X", "errmsg": "no"};
        let err: mongodb::error::CommandError = bson::from_document(reply).expect("command error");
        MongoError::from(ErrorKind::Command(err))
    }

    #[test]
    fn classification_is_by_code_and_label() {
        assert!(matches!(
            classify("commit", command_error(388)),
            StoreError::TooLarge { code: 388, .. }
        ));
        assert!(matches!(
            classify("insert", command_error(10_334)),
            StoreError::TooLarge { .. }
        ));
        let refused = classify("update", command_error(121));
        assert!(matches!(refused, StoreError::Refused { .. }), "{refused}");
        assert!(!refused.is_retryable());
        let conflict = classify("insert", command_error(112));
        assert!(conflict.is_retryable(), "{conflict}");
        let stepped_down = classify("commit", command_error(189));
        assert!(stepped_down.is_retryable());
        let io = MongoError::from(ErrorKind::Io(std::sync::Arc::new(
            std::io::ErrorKind::ConnectionReset.into(),
        )));
        assert!(classify("insert", io).is_retryable());
    }
}
