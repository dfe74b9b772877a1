//! MongoDB calls, each with a deadline. Errors never carry the connection string's
//! credentials.

use std::time::Duration;

use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};

/// A MongoDB call that failed or did not answer in time.
#[derive(Debug)]
pub enum CallError {
    Timeout {
        op: &'static str,
        after: Duration,
    },
    Mongo {
        op: &'static str,
        code: Option<i32>,
        message: String,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout { op, after } => {
                write!(f, "MongoDB {op}: no answer within {} ms", after.as_millis())
            }
            CallError::Mongo { op, message, .. } => write!(f, "MongoDB {op}: {message}"),
        }
    }
}

impl std::error::Error for CallError {}

impl CallError {
    pub fn code(&self) -> Option<i32> {
        match self {
            CallError::Mongo { code, .. } => *code,
            CallError::Timeout { .. } => None,
        }
    }
}

fn code_of(e: &MongoError) -> Option<i32> {
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

/// Driver errors can quote the connection string: never print its credentials.
fn redact(text: &str) -> String {
    match (text.find("://"), text.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &text[..scheme], &text[at..])
        }
        _ => text.to_owned(),
    }
}

pub async fn deadline<T>(
    op: &'static str,
    after: Duration,
    fut: impl std::future::IntoFuture<Output = Result<T, MongoError>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::Mongo {
            op,
            code: code_of(&e),
            message: redact(&e.to_string()),
        }),
        Err(_) => Err(CallError::Timeout { op, after }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_an_error_message() {
        assert_eq!(
            redact("failed: mongodb://user:secret@db.example.com/x"),
            "failed: mongodb://***@db.example.com/x"
        );
        assert_eq!(redact("plain"), "plain");
    }
}
