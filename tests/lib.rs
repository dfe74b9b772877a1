//! Cross-crate tests live beside this file, one `[[test]]` target each; helpers are in
//! `crates/testkit`, and the ones only these tests share are modules here.

pub mod browser;
pub mod console_proc;
pub mod pipeline;
