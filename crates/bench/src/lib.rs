//! What the `bench` binary shares with this package's tests: the chaos driver, which
//! `make chaos` runs long and `cargo test` runs short.

pub mod chaos;
