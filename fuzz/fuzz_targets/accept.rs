//! A telemetry-topic value, any bytes, through the writer's whole check (`accept`) and,
//! when accepted, into the MongoDB document (`Prepared::new`). Invariants:
//! - an accepted message always makes a document, whose `_id` is the key and whose field
//!   names, at every depth, are never `$...`, dotted or NUL (only the fixed `_id`), with
//!   every value as validated;
//! - a refusal says why: Invalid has violations, each with a rule code and a JSON Pointer
//!   ("" or "/..."); Unparseable names its reason.
#![no_main]

use iot_bridge_fuzz::{check_document, check_key_form, check_rejection, now};
use libfuzzer_sys::fuzz_target;
use telemetry::document::Prepared;

fuzz_target!(|data: &[u8]| {
    match telemetry::accept(data, now()) {
        Ok((key, t)) => {
            check_key_form(&key, &t.device_id);
            let p = Prepared::new(key.clone(), &t, now())
                .unwrap_or_else(|v| panic!("an accepted message makes no document: {v}"));
            check_document(&p, &key, &t);
            assert_eq!(
                (p.device_id.as_str(), p.ts, p.seq),
                (t.device_id.as_str(), t.ts, t.seq)
            );
        }
        Err(r) => check_rejection(&r),
    }
});
