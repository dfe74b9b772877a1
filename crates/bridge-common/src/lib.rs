//! Shared by the Lambda (`sqs-to-kafka`), the writer (`kafka-to-mongo`) and `bridgectl`.

pub mod broker_context;
#[cfg(feature = "mongo")]
pub mod collection;
pub mod emf;
pub mod kafka;
pub mod logging;
#[cfg(feature = "mongo")]
pub mod mongo;
pub mod secret;
pub mod transport;

pub use secret::Secret;
