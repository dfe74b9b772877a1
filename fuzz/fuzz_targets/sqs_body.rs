//! An SQS body, any bytes: `parse_body` and `frame` agree with each other, and a raw JSON
//! body and the same body base64-encoded (the IoT rule's `useBase64`) frame identically:
//! same outcome, same key, same deviceId, same object (both sizes are the decoded text's).
#![no_main]

use base64::Engine as _;
use iot_bridge_fuzz::{check_key_form, check_rejection};
use libfuzzer_sys::fuzz_target;
use telemetry::parse::{MAX_NON_FINITE_PATHS, MAX_POINTER_BYTES};
use telemetry::{MAX_BODY_BYTES, Rejection, Rule, frame, parse_body};

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    let parsed = parse_body(&body);
    let framed = frame(&body);
    match (&parsed, &framed) {
        (Ok(p), Ok(f)) => {
            assert_eq!(p, &f.parsed);
            check_key_form(&f.key, &f.device_id);
            assert_eq!(
                p.object.get("deviceId").and_then(|v| v.as_str()),
                Some(f.device_id.as_str())
            );
            assert!(p.bytes <= MAX_BODY_BYTES, "{} bytes accepted", p.bytes);
            assert!(
                p.non_finite.len() <= MAX_NON_FINITE_PATHS,
                "{} non-finite paths",
                p.non_finite.len()
            );
            for x in &p.non_finite {
                assert!(
                    x.starts_with('/') && x.len() <= MAX_POINTER_BYTES + "...[cut]".len(),
                    "{x:?}"
                );
            }
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "frame refused differently from parse_body");
            check_rejection(a);
        }
        (Ok(_), Err(r)) => {
            // Only the deviceId can stop a parsed body from being framed.
            let v = r.violations();
            assert!(v.len() == 1 && v[0].path == "/deviceId", "{r:?}");
            check_rejection(r);
        }
        (Err(r), Ok(_)) => panic!("frame accepted what parse_body refused: {r:?}"),
    }
    if let Err(Rejection::Invalid(v)) = &parsed
        && let Some(Rule::MaxBytes { max, actual }) = v.first().map(|v| &v.rule)
    {
        assert!(*actual > *max && *max == MAX_BODY_BYTES);
    }

    // Raw JSON vs base64 of the same text: the decoded text is what is parsed and size-checked.
    if matches!(body.trim().as_bytes().first(), Some(b'{' | b'[' | b'"')) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
        let framed64 = frame(&b64);
        match (&framed, &framed64) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.key, b.key, "raw and base64 bodies got different keys");
                assert_eq!(a.device_id, b.device_id);
                assert_eq!(a.parsed.object, b.parsed.object);
                assert_eq!(a.parsed.non_finite, b.parsed.non_finite);
                assert_eq!(a.parsed.bytes, b.parsed.bytes);
                assert!(!a.parsed.base64 && b.parsed.base64);
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "raw and base64 bodies refused differently"),
            (a, b) => panic!(
                "raw and base64 forms of one body disagree:\n raw: {:?}\n b64: {:?}",
                a.as_ref().map(|f| &f.key),
                b.as_ref().map(|f| &f.key)
            ),
        }
    }
});
