//! A MongoDB client for tests, and a fresh database per test.

use std::sync::{Arc, Mutex};

use mongodb::bson::Document;
use mongodb::event::EventHandler;
use mongodb::event::command::{CommandEvent, CommandStartedEvent};
use mongodb::options::ClientOptions;
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

/// A client on `uri` that calls `on_started` with every command as it is sent: to
/// record commands, or to act at one (hold the network, pause the caller).
pub async fn client_with_hook(
    uri: &str,
    on_started: impl Fn(&CommandStartedEvent) + Send + Sync + 'static,
) -> Client {
    let mut opts = ClientOptions::parse(uri)
        .await
        .unwrap_or_else(|e| panic!("parse the MongoDB URI {uri}: {e}"));
    opts.command_event_handler = Some(EventHandler::callback(move |e: CommandEvent| {
        if let CommandEvent::Started(started) = e {
            on_started(&started);
        }
    }));
    Client::with_options(opts).unwrap_or_else(|e| panic!("MongoDB client for {uri}: {e}"))
}

/// Every command a monitored client sent, in order.
#[derive(Debug, Clone, Default)]
pub struct Commands(Arc<Mutex<Vec<(String, Document)>>>);

impl Commands {
    /// (command name, command body) of each, so far.
    pub fn all(&self) -> Vec<(String, Document)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The bodies of the commands named `name` (`find`, `insert`, ...).
    pub fn named(&self, name: &str) -> Vec<Document> {
        self.all()
            .into_iter()
            .filter_map(|(n, body)| (n == name).then_some(body))
            .collect()
    }
}

/// A client on the stack's MongoDB, and the commands it sends.
pub async fn monitored_client() -> (Client, Commands) {
    let commands = Commands::default();
    let sink = Arc::clone(&commands.0);
    let client = client_with_hook(StackEnv::get().mongo_uri(), move |started| {
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((started.command_name.clone(), started.command.clone()));
    })
    .await;
    (client, commands)
}
