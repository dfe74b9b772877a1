//! MongoDB calls with a deadline, server codes, and error text without credentials:
//! what the writer and `bridgectl migrate-timeseries` both need of a call.

use std::time::Duration;

use mongodb::error::{Error, ErrorKind, WriteFailure};

pub const DUPLICATE_KEY: i32 = 11_000;
pub const NAMESPACE_EXISTS: i32 = 48;

/// A MongoDB call that failed, or did not answer within its deadline. Its text (and
/// its Debug) never carries the connection string's credentials.
pub enum CallError {
    Timeout { op: &'static str, after: Duration },
    Failed { op: &'static str, error: Error },
}

impl CallError {
    /// The server's code, when it answered with one.
    pub fn code(&self) -> Option<i32> {
        match self {
            CallError::Failed { error, .. } => code_of(error),
            CallError::Timeout { .. } => None,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout { op, after } => {
                write!(f, "MongoDB {op}: no answer within {} ms", after.as_millis())
            }
            CallError::Failed { op, error } => write!(f, "MongoDB {op}: {}", redact(error)),
        }
    }
}

// By hand: the driver's own Debug may quote the URI.
impl std::fmt::Debug for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallError({self})")
    }
}

// No `source()`: the driver error's text is only shown redacted.
impl std::error::Error for CallError {}

/// Runs `fut`, a MongoDB call named `op`, for at most `after`.
pub async fn deadline<T>(
    op: &'static str,
    after: Duration,
    fut: impl IntoFuture<Output = Result<T, Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r.map_err(|error| CallError::Failed { op, error }),
        Err(_) => Err(CallError::Timeout { op, after }),
    }
}

/// The server code of a command error, a write error or a write concern error.
pub fn code_of(e: &Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|w| w.first())
            .map(|w| w.code)
            .or_else(|| m.write_concern_error.as_ref().map(|w| w.code)),
        _ => None,
    }
}

/// The driver's text, which can quote the connection string, without its credentials.
pub fn redact(e: &Error) -> String {
    redact_text(&e.to_string())
}

fn redact_text(text: &str) -> String {
    match (text.find("://"), text.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &text[..scheme], &text[at..])
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_text() {
        assert_eq!(
            redact_text("bad uri mongodb://user:secret@db:27017/x"),
            "bad uri mongodb://***@db:27017/x"
        );
        assert_eq!(redact_text("plain"), "plain");
        let failed = CallError::Failed {
            op: "find",
            error: Error::from(std::io::Error::other(
                "failed: mongodb://user:secret@db.example.com/x",
            )),
        };
        assert!(!failed.to_string().contains("secret"), "{failed}");
        assert!(!format!("{failed:?}").contains("secret"), "{failed:?}");
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_a_timeout_with_no_code() {
        let never = std::future::pending::<Result<(), Error>>();
        let e = deadline("ping", Duration::from_millis(10), never)
            .await
            .unwrap_err();
        assert!(matches!(e, CallError::Timeout { op: "ping", .. }), "{e}");
        assert_eq!(e.code(), None);
        assert_eq!(e.to_string(), "MongoDB ping: no answer within 10 ms");
    }
}
