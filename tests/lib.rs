//! Cross-crate tests live beside this file, one `[[test]]` target each; helpers are in `crates/testkit`.
