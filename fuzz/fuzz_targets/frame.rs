//! A device message built from structured input (deviceId, ts, seq, readings, meta, the IoT
//! rule's fields, unknown fields, sometimes padded to the 128 KiB limit), written as JSON
//! text, then framed. Invariants:
//! - the key depends on neither key order, white space nor base64 (at every depth);
//! - the key ignores the IoT rule's fields (`mqtt_topic`, `client_id`, `received_at`);
//! - the key has the form its fields call for (`#seq:` for a u64 seq, `#ts:<ms>:` ...);
//! - epoch milliseconds and the same instant in RFC 3339 give the same key;
//! - text with NaN/Infinity/1e400 still parses (never "unparseable");
//! - the Kafka record of a framed body is accepted by the writer's `decode_value` with the
//!   same key, deviceId and body: the two hops agree.
#![no_main]

use arbitrary::{Result as ArbResult, Unstructured};
use aws_lambda_events::sqs::SqsMessage;
use base64::Engine as _;
use chrono::{DateTime, Datelike as _, SecondsFormat, Utc};
use iot_bridge_fuzz::{
    J, check_key_form, check_rejection, first_diff, gen_device_id, gen_entries, short,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use telemetry::envelope::header;
use telemetry::{Framed, MAX_BODY_BYTES, Rejection, Rule, decode_value, frame};

#[derive(Debug)]
enum Ts {
    Millis(i64),
    Rfc3339(i64),
    Other(J),
    Absent,
}

#[derive(Debug)]
struct Msg {
    device_id: Option<J>,
    seq: Option<J>,
    ts: Ts,
    readings: Option<J>,
    meta: Option<J>,
    iot: [Option<J>; 3],
    iot_alt: [Option<J>; 3],
    extra: Vec<(String, J)>,
    order: u64,
    pad: Option<u16>,
}

const IOT_FIELDS: [&str; 3] = ["mqtt_topic", "client_id", "received_at"];

fn gen_msg(u: &mut Unstructured<'_>) -> ArbResult<Msg> {
    let device_id = match u.int_in_range(0..=7)? {
        0 => None,
        1 => Some(J::generate(u, 1)?),
        _ => Some(J::S(gen_device_id(u)?)),
    };
    let seq = match u.int_in_range(0..=5)? {
        0 | 1 => None,
        2 | 3 => Some(J::U(u.arbitrary()?)),
        _ => Some(J::generate(u, 0)?),
    };
    // Around now (2026) most of the time, so both valid and out-of-window instants occur.
    let millis = |u: &mut Unstructured<'_>| -> ArbResult<i64> {
        Ok(if u.ratio(3, 4)? {
            1_767_225_600_000 + u.int_in_range(-10_000_000_000..=10_000_000_000i64)?
        } else {
            u.arbitrary()?
        })
    };
    let ts = match u.int_in_range(0..=7)? {
        0 => Ts::Absent,
        1 => Ts::Other(J::generate(u, 0)?),
        2 | 3 => Ts::Rfc3339(millis(u)?),
        _ => Ts::Millis(millis(u)?),
    };
    let readings = match u.int_in_range(0..=7)? {
        0 => None,
        1 => Some(J::generate(u, 2)?),
        _ => {
            let n = u.int_in_range(0..=12)?;
            let mut entries = Vec::new();
            for _ in 0..n {
                entries.push((u.arbitrary::<String>()?, J::gen_reading(u)?));
            }
            Some(J::O(iot_bridge_fuzz::dedup(entries)))
        }
    };
    let meta = if u.ratio(1, 2)? {
        Some(J::O(gen_entries(u, 3, 6)?))
    } else {
        None
    };
    let iot_value = |u: &mut Unstructured<'_>, i: usize| -> ArbResult<Option<J>> {
        Ok(match u.int_in_range(0..=3)? {
            0 => None,
            1 => Some(J::generate(u, 1)?),
            _ if i == 2 => Some(J::I(millis(u)?)),
            _ => Some(J::S(u.arbitrary()?)),
        })
    };
    let iot = [iot_value(u, 0)?, iot_value(u, 1)?, iot_value(u, 2)?];
    let iot_alt = [iot_value(u, 0)?, iot_value(u, 1)?, iot_value(u, 2)?];
    let extra = gen_entries(u, 3, 4)?;
    let order = u.arbitrary::<u64>()? | 1;
    // 1 in 64 (a padded message costs ~100 times more), and never once the input is used
    // up (`ratio` is then always true).
    let pad = if u.ratio(63, 64)? {
        None
    } else {
        Some(u.arbitrary()?)
    };
    Ok(Msg {
        device_id,
        seq,
        ts,
        readings,
        meta,
        iot,
        iot_alt,
        extra,
        order,
        pad,
    })
}

/// RFC 3339 can write years 0001-9999 only.
fn rfc3339(ms: i64) -> Option<String> {
    let t = DateTime::<Utc>::from_timestamp_millis(ms)?;
    (1..=9999)
        .contains(&t.year())
        .then(|| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl Msg {
    /// The top-level entries; `iot` picks the IoT rule's fields, `ts_as_rfc` writes a
    /// millisecond `ts` as RFC 3339.
    fn body(&self, iot: &[Option<J>; 3], ts_as_rfc: bool, pad: Option<usize>) -> Vec<(String, J)> {
        let mut e = Vec::new();
        if let Some(d) = &self.device_id {
            e.push(("deviceId".to_owned(), d.clone()));
        }
        if let Some(s) = &self.seq {
            e.push(("seq".to_owned(), s.clone()));
        }
        match &self.ts {
            Ts::Absent => {}
            Ts::Millis(ms) if ts_as_rfc => e.push((
                "ts".to_owned(),
                J::S(rfc3339(*ms).expect("checked by the caller")),
            )),
            Ts::Millis(ms) => e.push(("ts".to_owned(), J::I(*ms))),
            Ts::Rfc3339(ms) => match rfc3339(*ms) {
                Some(s) => e.push(("ts".to_owned(), J::S(s))),
                None => e.push(("ts".to_owned(), J::I(*ms))),
            },
            Ts::Other(j) => e.push(("ts".to_owned(), j.clone())),
        }
        if let Some(r) = &self.readings {
            e.push(("readings".to_owned(), r.clone()));
        }
        if let Some(m) = &self.meta {
            e.push(("meta".to_owned(), m.clone()));
        }
        for (name, value) in IOT_FIELDS.iter().zip(iot) {
            if let Some(v) = value {
                e.push(((*name).to_owned(), v.clone()));
            }
        }
        e.extend(self.extra.iter().cloned());
        let mut e = iot_bridge_fuzz::dedup(e);
        if let Some(n) = pad
            && !e.iter().any(|(k, _)| k == "pad")
        {
            e.push(("pad".to_owned(), J::S("p".repeat(n))));
        }
        e
    }

    /// The length of a `pad` string that brings the body just under (or just over) the
    /// 128 KiB limit, where the size checks of both hops meet. Computed once: every variant
    /// of the message gets the same pad, as it must to get the same key.
    fn pad_len(&self) -> Option<usize> {
        let pad = self.pad?;
        let len = J::O(self.body(&self.iot, false, None)).to_text().len() + r#","pad":"""#.len();
        let target = MAX_BODY_BYTES + 64 - (pad as usize % 1024);
        (target > len).then(|| target - len)
    }
}

fn over_limit(r: &Rejection) -> bool {
    r.violations()
        .iter()
        .any(|v| matches!(v.rule, Rule::MaxBytes { .. }))
}

/// Two framings of one message must agree, unless one text is over the size limit.
fn same(
    a: &Result<Framed, Rejection>,
    b: &Result<Framed, Rejection>,
    what: &str,
    texts: (&str, &str),
) {
    match (a, b) {
        (Ok(x), Ok(y)) => {
            assert_eq!(
                x.key,
                y.key,
                "{what}: keys differ\n A: {}\n B: {}",
                short(texts.0),
                short(texts.1)
            );
            assert_eq!(x.device_id, y.device_id, "{what}");
        }
        (Err(x), _) | (_, Err(x)) if over_limit(x) => {}
        (Err(x), Err(y)) => assert_eq!(x, y, "{what}"),
        _ => panic!(
            "{what}: one framed, one refused\n A: {}\n B: {}",
            short(texts.0),
            short(texts.1)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(msg) = gen_msg(&mut u) else { return };
    let pad = msg.pad_len();
    let entries = msg.body(&msg.iot, false, pad);
    let body = J::O(entries.clone());
    let text = body.to_text();
    let framed = frame(&text);
    if let Err(r) = &framed {
        assert!(
            matches!(r, Rejection::Invalid(_)),
            "well-formed JSON (NaN and all) is unparseable: {r}\n{}",
            short(&text)
        );
        check_rejection(r);
    }

    // Key order (at every depth) and white space.
    let mut shuffled = String::new();
    let mut seed = msg.order;
    body.write(&mut shuffled, Some(&mut seed), msg.order % 3 == 0);
    same(
        &framed,
        &frame(&shuffled),
        "another key order",
        (&text, &shuffled),
    );

    // Base64, as the IoT rule's useBase64 writes it.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&shuffled);
    same(&framed, &frame(&b64), "base64", (&text, &b64));

    // The IoT rule's fields: other values, added or removed.
    let other_iot = J::O(msg.body(&msg.iot_alt, false, pad)).to_text();
    same(
        &framed,
        &frame(&other_iot),
        "other IoT rule fields",
        (&text, &other_iot),
    );

    // The same instant as epoch milliseconds or as RFC 3339.
    if let Ts::Millis(ms) = msg.ts
        && rfc3339(ms).is_some()
    {
        let as_rfc = J::O(msg.body(&msg.iot, true, pad)).to_text();
        same(&framed, &frame(&as_rfc), "ts as RFC 3339", (&text, &as_rfc));
    }

    let Ok(f) = framed else { return };
    check_key_form(&f.key, &f.device_id);
    // The form the key must take, read from the fields as written.
    let field = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let seq = match field("seq") {
        None => Some(None),
        Some(J::U(n)) => Some(Some(*n)),
        Some(J::I(n)) => Some(u64::try_from(*n).ok()),
        Some(_) => None, // floats, "-0", strings...: not worth a second opinion here
    };
    match (seq, field("ts")) {
        (Some(Some(n)), _) => assert_eq!(f.key, format!("{}#seq:{n}", f.device_id)),
        (Some(None), Some(J::I(ms))) if DateTime::<Utc>::from_timestamp_millis(*ms).is_some() => {
            assert!(
                f.key.starts_with(&format!("{}#ts:{ms}:", f.device_id)),
                "{}",
                f.key
            )
        }
        (Some(None), None) => {
            assert!(
                f.key.starts_with(&format!("{}#body:", f.device_id)),
                "{}",
                f.key
            )
        }
        _ => {}
    }

    // The second hop reads the record the first hop writes: same key, deviceId and body.
    let mut sqs = SqsMessage::default();
    sqs.message_id = Some("fuzz-message-1".to_owned());
    let (key, device_id, object, non_finite) = (
        f.key.clone(),
        f.device_id.clone(),
        f.parsed.object.clone(),
        f.parsed.non_finite.clone(),
    );
    let record = f.into_kafka_record(&sqs);
    assert_eq!(record.key, device_id);
    assert_eq!(record.header(header::IDEMPOTENCY_KEY), Some(key.as_str()));
    let env = match decode_value(&record.value) {
        Ok(env) => env,
        Err(r) => panic!(
            "the writer refuses the record the Lambda wrote ({} bytes of value, body {} bytes): {r}",
            record.value.len(),
            text.len()
        ),
    };
    assert_eq!(env.device_id, device_id);
    assert_eq!(env.non_finite_paths, non_finite);
    assert_eq!(env.sqs_message_id.as_deref(), Some("fuzz-message-1"));
    let (object, body) = (Value::Object(object), Value::Object(env.body));
    if object != body {
        panic!(
            "the body changed on its way through Kafka: {}",
            first_diff(&object, &body).unwrap_or_default()
        );
    }
    assert_eq!(
        env.idempotency_key,
        key,
        "the hops disagree on the key of {}",
        short(&text)
    );
});
