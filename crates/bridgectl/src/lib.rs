//! `bridgectl`'s commands as a library: the binary (`main.rs`) runs [`cli::main`], the
//! bench crate drives the same event-source mapping and SQS helpers, and the stack tests
//! (`tests/`) build the same command line as their own binary.

pub mod cli;
pub mod common;
pub mod console;
pub mod demo;
pub mod dlq;
pub mod esm;
pub mod migrate;
pub mod replay;
pub mod sqs;
pub mod status;
