//! A MongoDB client for tests, and a fresh database per test.

use mongodb::{Client, Database};

use crate::StackEnv;

pub async fn client() -> Client {
    let uri = StackEnv::get().mongo_uri();
    Client::with_uri_str(uri)
        .await
        .unwrap_or_else(|e| panic!("connect to MongoDB at {uri}: {e}"))
}

/// A database no other test uses.
pub async fn fresh_database(prefix: &str) -> Database {
    client()
        .await
        .database(&crate::unique(prefix).replace('-', "_"))
}
