//! The BSON document builder: any JSON object, made a plausible message, validated, then
//! built into the MongoDB document. The first byte may pick where the object goes:
//! '1' its `meta`, '2' its `readings`, '3' unknown top-level fields; anything else: the object
//! is the body itself, with `deviceId`, `ts` and `readings` added when absent.
//! Same invariants as `accept`: no reserved field name at any depth, `_id` = key, values kept.
#![no_main]

use iot_bridge_fuzz::{check_document, check_key_form, check_rejection, now};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use telemetry::document::Prepared;
use telemetry::{idempotency_key, validate};

fn base() -> Map<String, Value> {
    match json!({"deviceId": "fuzz-device-1", "seq": 7, "ts": "2026-05-31T12:00:00.000Z", "readings": {"t": 21.5}})
    {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fuzz_target!(|data: &[u8]| {
    let (mode, json) = match data.first() {
        Some(m @ b'1'..=b'3') => (*m, &data[1..]),
        _ => (b'0', data),
    };
    let Ok(object) = serde_json::from_slice::<Map<String, Value>>(json) else {
        return;
    };
    let body = match mode {
        b'1' => {
            let mut b = base();
            b.insert("meta".into(), Value::Object(object));
            b
        }
        b'2' => {
            let mut b = base();
            b.insert("readings".into(), Value::Object(object));
            b
        }
        b'3' => {
            let mut b = base();
            b.extend(object);
            b
        }
        _ => {
            let mut b = object;
            let defaults = base();
            for name in ["deviceId", "ts", "readings"] {
                if !b.contains_key(name) {
                    b.insert(name.into(), defaults[name].clone());
                }
            }
            b
        }
    };
    let device_id = match body.get("deviceId") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let key = idempotency_key(&device_id, &body);
    match validate(body, &[], now()) {
        Ok(t) => {
            assert_eq!(t.device_id, device_id);
            check_key_form(&key, &t.device_id);
            let p = Prepared::new(key.clone(), &t, now())
                .unwrap_or_else(|v| panic!("a valid message makes no document: {v}"));
            check_document(&p, &key, &t);
        }
        Err(r) => check_rejection(&r),
    }
});
