//! The writer binary these tests run through `testkit::writer`: this package's own.

pub const WRITER: &str = env!("CARGO_BIN_EXE_kafka-to-mongo");
