//! Properties of the pure parts of the domain, on generated inputs: canonical JSON, the
//! idempotency key, Kafka's murmur2 partitioner, and the BSON order that `$max` on the
//! device state relies on.
//!
//! Failures are not persisted (no proptest-regressions files): a failing case is printed,
//! shrunk, and should become a plain test.

use std::cmp::Ordering;

use base64::Engine as _;
use bson::{Bson, Document, doc};
use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};
use telemetry::document::seq_to_raw;
use telemetry::key::write_canonical;
use telemetry::murmur2::{murmur2, partition_for_key};
use telemetry::validate::MIN_TS_MILLIS;
use telemetry::{frame, idempotency_key};

fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::with_cases(256)
    }
}

// ---------------------------------------------------------------------------------------
// Generators

/// Finite doubles of every class (JSON has no NaN or Infinity).
fn finite_f64() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

/// Any Unicode text: quotes, backslashes, control characters, astral planes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,4}",
        any::<String>(),
        "[\"\\\\/\u{0}-\u{1f}\u{7f}\u{2028}\u{2029}\u{feff}\u{10ffff}]{0,4}",
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![finite_f64().prop_map(Value::from), json_leaf_but_doubles()]
}

fn json_leaf_but_doubles() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_tree(json_leaf().boxed())
}

fn json_tree(leaf: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// A reading as devices send them.
fn reading() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        finite_f64().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        text().prop_map(Value::from),
    ]
}

fn readings() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(text(), reading(), 0..8).prop_map(|m| m.into_iter().collect())
}

/// How a message writes its `ts`.
#[derive(Debug, Clone)]
enum Ts {
    Absent,
    Millis(i64),
    /// RFC 3339 at an offset in seconds.
    Rfc3339(i64, i32),
    Garbage(String),
}

impl Ts {
    fn json(&self) -> Option<Value> {
        match self {
            Ts::Absent => None,
            Ts::Millis(ms) => Some(Value::from(*ms)),
            Ts::Rfc3339(ms, offset) => Some(Value::from(rfc3339(*ms, *offset))),
            Ts::Garbage(s) => Some(Value::from(s.as_str())),
        }
    }
}

fn rfc3339(ms: i64, offset_secs: i32) -> String {
    let offset = FixedOffset::east_opt(offset_secs).unwrap();
    offset
        .timestamp_millis_opt(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// 2000-01-01 .. 2030-01-01, in milliseconds.
fn valid_ms() -> impl Strategy<Value = i64> {
    MIN_TS_MILLIS..1_893_456_000_000
}

/// Whole-minute offsets in -12:00..=+14:00.
fn offset() -> impl Strategy<Value = i32> {
    (-12 * 60..=14 * 60).prop_map(|m: i32| m * 60)
}

fn ts() -> impl Strategy<Value = Ts> {
    prop_oneof![
        Just(Ts::Absent),
        valid_ms().prop_map(Ts::Millis),
        (valid_ms(), offset()).prop_map(|(ms, o)| Ts::Rfc3339(ms, o)),
        "[a-z ]{0,8}".prop_map(Ts::Garbage),
    ]
}

fn device_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,40}"
}

/// A device body (deviceId, seq?, ts?, readings, meta?), in that order.
#[derive(Debug, Clone)]
struct Message {
    device: String,
    seq: Option<u64>,
    ts: Ts,
    readings: Map<String, Value>,
    meta: Option<Value>,
}

impl Message {
    fn body(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("deviceId".into(), Value::from(self.device.as_str()));
        if let Some(seq) = self.seq {
            m.insert("seq".into(), Value::from(seq));
        }
        if let Some(ts) = self.ts.json() {
            m.insert("ts".into(), ts);
        }
        m.insert("readings".into(), Value::Object(self.readings.clone()));
        if let Some(meta) = &self.meta {
            m.insert("meta".into(), meta.clone());
        }
        m
    }
}

fn message() -> impl Strategy<Value = Message> {
    (
        device_id(),
        prop::option::of(any::<u64>()),
        ts(),
        readings(),
        prop::option::of(json_value()),
    )
        .prop_map(|(device, seq, ts, readings, meta)| Message {
            device,
            seq,
            ts,
            readings,
            meta,
        })
}

/// A message keyed by ts and readings: no seq, a readable ts.
fn ts_keyed_message() -> impl Strategy<Value = Message> {
    (
        message(),
        prop_oneof![
            valid_ms().prop_map(Ts::Millis),
            (valid_ms(), offset()).prop_map(|(ms, o)| Ts::Rfc3339(ms, o)),
        ],
    )
        .prop_map(|(m, ts)| Message { seq: None, ts, ..m })
}

/// The fields the AWS IoT rule adds (`topic()`, `clientid()`, `timestamp()`), each maybe absent.
fn iot_fields() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    (
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(topic, client, at)| {
            let mut out = Vec::new();
            if let Some(t) = topic {
                out.push(("mqtt_topic", Value::from(t)));
            }
            if let Some(c) = client {
                out.push(("client_id", Value::from(c)));
            }
            if let Some(a) = at {
                out.push(("received_at", Value::from(a)));
            }
            out
        })
}

// ---------------------------------------------------------------------------------------
// Helpers

fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

/// The same tree with every object's keys inserted in reverse order (with serde_json's
/// `preserve_order`, which bson turns on, that is a different order; without it, the same).
fn reversed(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let entries: Vec<_> = map.iter().collect();
            Value::Object(
                entries
                    .into_iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), reversed(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        scalar => scalar.clone(),
    }
}

/// The same tree with every object's keys inserted in byte order.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        scalar => scalar.clone(),
    }
}

/// JSON white space outside string literals.
fn whitespace_outside_strings(json: &str) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in json.bytes().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return Some(i);
        }
    }
    None
}

fn key_of(body: &str) -> String {
    frame(body)
        .unwrap_or_else(|r| panic!("frame refused {body}: {r}"))
        .key
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

// ---------------------------------------------------------------------------------------
// 1. Canonical JSON

proptest! {
    #![proptest_config(config())]

    #[test]
    fn canonical_json_ignores_key_order(v in json_value()) {
        prop_assert_eq!(canonical(&v), canonical(&reversed(&v)));
    }

    #[test]
    fn canonical_json_is_the_compact_key_sorted_serialization(v in json_value()) {
        let c = canonical(&v);
        prop_assert_eq!(&c, &serde_json::to_string(&sorted(&v)).unwrap());
        prop_assert_eq!(whitespace_outside_strings(&c), None, "{}", c);
    }

    /// Everything but doubles: strings of any text, integers of both signs and sizes.
    #[test]
    fn canonical_json_without_doubles_parses_back_to_an_equal_value(
        v in json_tree(json_leaf_but_doubles().boxed()),
    ) {
        let c = canonical(&v);
        let back: Value = serde_json::from_str(&c).unwrap();
        prop_assert_eq!(&back, &v, "{}", c);
    }

    #[test]
    fn canonical_json_parses_back_to_an_equal_value(v in json_value()) {
        let c = canonical(&v);
        let back: Value = serde_json::from_str(&c).unwrap();
        prop_assert_eq!(&back, &v, "{}", c);
    }
}

/// The smallest case the property above found: serde_json (built without its
/// `float_roundtrip` feature) reads the shortest text of this double one ulp off.
#[test]
fn the_canonical_text_of_a_double_parses_back_exactly() {
    let x: f64 = "-1.7737914987264658e-174".parse().unwrap(); // std reads it correctly
    let c = canonical(&Value::from(x));
    assert_eq!(c, "-1.7737914987264658e-174");
    let back: f64 = serde_json::from_str(&c).unwrap();
    assert_eq!(back.to_bits(), x.to_bits(), "{c} read back as {back:e}");
}

// ---------------------------------------------------------------------------------------
// 2. Idempotency key

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_key_is_the_same_for_a_raw_body_and_its_base64(m in message()) {
        let raw = Value::Object(m.body()).to_string();
        let key = key_of(&raw);
        prop_assert_eq!(&key_of(&b64(&raw)), &key);
        // What the first hop keys on is exactly idempotency_key of the parsed body.
        let parsed = frame(&raw).unwrap().parsed.object;
        prop_assert_eq!(&idempotency_key(&m.device, &parsed), &key);
        prop_assert!(key.starts_with(&format!("{}#", m.device)), "{}", key);
    }

    #[test]
    fn the_key_ignores_key_order(m in message()) {
        let body = Value::Object(m.body());
        let back = reversed(&body);
        prop_assert_eq!(
            idempotency_key(&m.device, body.as_object().unwrap()),
            idempotency_key(&m.device, back.as_object().unwrap())
        );
        prop_assert_eq!(key_of(&body.to_string()), key_of(&back.to_string()));
    }

    #[test]
    fn the_key_ignores_the_fields_the_iot_rule_adds(
        m in message(),
        first in iot_fields(),
        second in iot_fields(),
        at_front in any::<bool>(),
    ) {
        let plain = m.body();
        let with = |fields: &[(&'static str, Value)]| {
            let mut out = Map::new();
            if at_front {
                out.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            }
            out.extend(plain.clone());
            if !at_front {
                out.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            }
            out
        };
        let key = idempotency_key(&m.device, &plain);
        prop_assert_eq!(&idempotency_key(&m.device, &with(&first)), &key);
        prop_assert_eq!(&idempotency_key(&m.device, &with(&second)), &key);
        let raw = Value::Object(with(&first)).to_string();
        prop_assert_eq!(key_of(&raw), key_of(&Value::Object(with(&second)).to_string()));
        prop_assert_eq!(key_of(&raw), key_of(&b64(&raw)));
    }

    #[test]
    fn a_ts_key_changes_when_a_reading_changes(
        m in ts_keyed_message(),
        pick in any::<prop::sample::Index>(),
        new_value in reading(),
        new_name in text(),
    ) {
        let key = idempotency_key(&m.device, &m.body());
        prop_assert!(key.contains("#ts:"), "{}", key);
        // A changed value.
        if !m.readings.is_empty() {
            let name = m.readings.keys().nth(pick.index(m.readings.len())).unwrap().clone();
            if m.readings[&name] != new_value {
                let mut changed = m.clone();
                changed.readings.insert(name, new_value.clone());
                prop_assert_ne!(&idempotency_key(&m.device, &changed.body()), &key);
            }
        }
        // An added reading.
        if !m.readings.contains_key(&new_name) {
            let mut added = m.clone();
            added.readings.insert(new_name, new_value);
            prop_assert_ne!(&idempotency_key(&m.device, &added.body()), &key);
        }
    }

    #[test]
    fn a_ts_key_depends_on_the_instant_not_on_how_ts_is_written(
        m in ts_keyed_message(),
        ms in valid_ms(),
        offset in offset(),
    ) {
        let as_millis = Message { ts: Ts::Millis(ms), ..m.clone() };
        let as_text = Message { ts: Ts::Rfc3339(ms, offset), ..m };
        let key = idempotency_key(&as_millis.device, &as_millis.body());
        prop_assert_eq!(&idempotency_key(&as_text.device, &as_text.body()), &key);
        prop_assert!(key.contains(&format!("#ts:{ms}:")), "{}", key);
    }
}

// ---------------------------------------------------------------------------------------
// 3. murmur2

/// Apache Kafka's `UtilsTest.testMurmur2` (clients/src/test/java/org/apache/kafka/common/utils).
#[test]
fn murmur2_matches_kafkas_utils_test_vectors() {
    let cases: [(&[u8], i32); 6] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107), // Java: new byte[] {'a', 'b', 'c'}
    ];
    for (input, expected) in cases {
        assert_eq!(
            murmur2(input),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// `Utils.murmur2` transcribed line by line in Java's terms: signed `int`s, `>>>`, the
/// `switch` that falls through.
fn java_murmur2(data: &[u8]) -> i32 {
    let length = data.len() as i32;
    let seed: i32 = 0x9747_b28c_u32 as i32;
    let m: i32 = 0x5bd1_e995;
    let r = 24;
    let ushr = |x: i32, n: u32| ((x as u32) >> n) as i32;
    let byte = |i: i32| i32::from(data[i as usize]) & 0xff;
    let mut h: i32 = seed ^ length;
    let length4 = length / 4;
    for i in 0..length4 {
        let i4 = i * 4;
        let mut k = byte(i4)
            .wrapping_add(byte(i4 + 1) << 8)
            .wrapping_add(byte(i4 + 2) << 16)
            .wrapping_add(byte(i4 + 3) << 24);
        k = k.wrapping_mul(m);
        k ^= ushr(k, r);
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let rest = length % 4;
    if rest >= 3 {
        h ^= byte((length & !3) + 2) << 16;
    }
    if rest >= 2 {
        h ^= byte((length & !3) + 1) << 8;
    }
    if rest >= 1 {
        h ^= byte(length & !3);
        h = h.wrapping_mul(m);
    }
    h ^= ushr(h, 13);
    h = h.wrapping_mul(m);
    h ^= ushr(h, 15);
    h
}

#[test]
fn the_java_transcription_matches_the_vectors_too() {
    assert_eq!(java_murmur2(b"21"), -973_932_308);
    assert_eq!(java_murmur2(b"abc"), 479_470_107);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn murmur2_is_kafkas_for_any_bytes(data in prop::collection::vec(any::<u8>(), 0..80)) {
        prop_assert_eq!(murmur2(&data), java_murmur2(&data));
    }

    #[test]
    fn a_key_always_lands_on_the_same_partition_in_range(
        key in prop_oneof![device_id().prop_map(String::into_bytes), prop::collection::vec(any::<u8>(), 0..64)],
        partitions in 1..=1024i32,
    ) {
        let p = partition_for_key(&key, partitions);
        prop_assert!((0..partitions).contains(&p), "{} of {}", p, partitions);
        prop_assert_eq!(p, partition_for_key(&key, partitions));
        // Java's BuiltInPartitioner: toPositive(murmur2(key)) % numPartitions.
        prop_assert_eq!(p, (java_murmur2(&key) & 0x7fff_ffff) % partitions);
    }
}

// ---------------------------------------------------------------------------------------
// 4. The order `$max` keeps on the device state
//
// `devices.last` is `{ts, seq, key, readings}` (README, "Message formats"), moved by `$max`,
// which compares BSON values in MongoDB's order. The document is built by
// `DeviceDelta::last` in kafka-to-mongo (private); its `seq` is `telemetry::document::seq_to_raw`,
// which is public and checked here. `last_doc` below follows the README's shape.

/// MongoDB's canonical type order (bsontypes.h `canonicalizeBSONType`) for the types used.
fn type_rank(b: &Bson) -> u8 {
    match b {
        Bson::MinKey => 0,
        Bson::Null | Bson::Undefined => 5,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 10,
        Bson::String(_) | Bson::Symbol(_) => 15,
        Bson::Document(_) => 20,
        Bson::Array(_) => 25,
        Bson::Binary(_) => 30,
        Bson::ObjectId(_) => 35,
        Bson::Boolean(_) => 40,
        Bson::DateTime(_) => 45,
        Bson::Timestamp(_) => 47,
        Bson::RegularExpression(_) => 50,
        _ => 127,
    }
}

/// An integer against a double, exactly (MongoDB does not round the integer to a double).
fn cmp_integer_double(l: i128, d: f64) -> Ordering {
    const TWO_127: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if d.is_nan() {
        return Ordering::Greater; // NaN sorts below every number
    }
    if d >= TWO_127 {
        return Ordering::Less;
    }
    if d < -TWO_127 {
        return Ordering::Greater;
    }
    let whole = d.trunc(); // an integer below 2^127 in magnitude: exact as i128
    l.cmp(&(whole as i128))
        .then_with(|| 0.0_f64.partial_cmp(&(d - whole)).unwrap_or(Ordering::Equal))
}

/// A Decimal128 (IEEE 754-2008 decimal128, binary integer decimal, as BSON stores it) as the
/// exact integer it holds. The ones used here are finite integers (`seq_to_raw` writes
/// exponent 0); anything else panics rather than compare wrongly.
fn decimal128_integer(d: &bson::Decimal128) -> i128 {
    const EXPONENT_BIAS: i32 = 6176;
    let bits = u128::from_le_bytes(d.bytes());
    assert_ne!(
        (bits >> 125) & 0b11,
        0b11,
        "{d}: NaN, infinity or the large coefficient form: not used"
    );
    let exponent = ((bits >> 113) & 0x3fff) as i32 - EXPONENT_BIAS;
    let coefficient = bits & ((1 << 113) - 1);
    assert!(
        coefficient < 10u128.pow(34),
        "{d}: non-canonical coefficient"
    );
    let mut v = i128::try_from(coefficient).unwrap();
    for _ in 0..exponent.max(0) {
        v = v
            .checked_mul(10)
            .unwrap_or_else(|| panic!("{d}: beyond i128"));
    }
    for _ in exponent.min(0)..0 {
        assert_eq!(v % 10, 0, "{d}: not an integer");
        v /= 10;
    }
    if bits >> 127 == 1 { -v } else { v }
}

/// Numbers of every type compare by value (MongoDB's `compareElementValues`: int32, int64,
/// double and decimal128 are one canonical type).
fn cmp_numbers(a: &Bson, b: &Bson) -> Ordering {
    let integer = |x: &Bson| match x {
        Bson::Int32(i) => Some(i128::from(*i)),
        Bson::Int64(i) => Some(i128::from(*i)),
        Bson::Decimal128(d) => Some(decimal128_integer(d)),
        _ => None,
    };
    let double = |x: &Bson| match x {
        Bson::Double(d) => *d,
        _ => unreachable!("only int32, int64, decimal128 and double are used"),
    };
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(x), None) => cmp_integer_double(x, double(b)),
        (None, Some(y)) => cmp_integer_double(y, double(a)).reverse(),
        (None, None) => {
            let (x, y) = (double(a), double(b));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                _ => x.partial_cmp(&y).unwrap(),
            }
        }
    }
}

/// MongoDB's comparison of two BSON values (the simple collation: strings by bytes).
fn bson_cmp(a: &Bson, b: &Bson) -> Ordering {
    let by_type = type_rank(a).cmp(&type_rank(b));
    if by_type != Ordering::Equal {
        return by_type;
    }
    match (a, b) {
        (Bson::Null, Bson::Null) => Ordering::Equal,
        (Bson::String(x), Bson::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.timestamp_millis().cmp(&y.timestamp_millis()),
        (Bson::Document(x), Bson::Document(y)) => cmp_documents(x, y),
        (Bson::Array(x), Bson::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = type_rank(p).cmp(&type_rank(q)).then_with(|| bson_cmp(p, q));
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        _ if type_rank(a) == 10 => cmp_numbers(a, b),
        _ => unreachable!("type not used in devices.last: {a:?}"),
    }
}

/// Field by field in stored order: the value's type, then the field name, then the value;
/// a document that runs out first is less.
fn cmp_documents(x: &Document, y: &Document) -> Ordering {
    for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
        let c = type_rank(vx)
            .cmp(&type_rank(vy))
            .then_with(|| kx.as_bytes().cmp(ky.as_bytes()))
            .then_with(|| bson_cmp(vx, vy));
        if c != Ordering::Equal {
            return c;
        }
    }
    x.len().cmp(&y.len())
}

fn seq_bson(seq: u64) -> Bson {
    Bson::try_from(seq_to_raw(seq)).unwrap()
}

/// The README's `last` shape: `{ts, seq, key, readings}`, a missing seq stored as null.
fn last_doc(ts_ms: i64, seq: Option<u64>) -> Document {
    let key = match seq {
        Some(s) => format!("d-1#seq:{s}"),
        None => format!("d-1#ts:{ts_ms}:0000000000000000"),
    };
    doc! {
        "ts": bson::DateTime::from_millis(ts_ms),
        "seq": seq.map_or(Bson::Null, seq_bson),
        "key": key,
        "readings": {"t": 1_i64},
    }
}

/// The README's order: ts, then seq, a missing seq below any.
fn readme_order(ts_ms: i64, seq: Option<u64>) -> (i64, i128) {
    (ts_ms, seq.map_or(-1, i128::from))
}

/// Seqs around the places where their BSON form changes.
fn seq_value() -> impl Strategy<Value = u64> {
    const I64_MAX: u64 = i64::MAX as u64;
    prop_oneof![
        any::<u64>(),
        0..1_000u64,
        (I64_MAX - 3)..=(I64_MAX + 3),
        9_999_999_999_999_999_995..=10_000_000_000_000_000_005u64,
        (u64::MAX - 3)..=u64::MAX,
    ]
}

/// The smallest case the property below found when a seq above i64::MAX was stored as its
/// decimal string: "9223372036854775808" > "10000000000000000000" as text. As a Decimal128
/// both are numbers, compared by value.
#[test]
fn a_larger_seq_is_a_larger_bson_value_beyond_i64_max() {
    let (low, high) = (
        9_223_372_036_854_775_808_u64,
        10_000_000_000_000_000_000_u64,
    );
    assert_eq!(
        bson_cmp(&seq_bson(low), &seq_bson(high)),
        Ordering::Less,
        "seq_to_raw({low}) = {:?} must sort below seq_to_raw({high}) = {:?}",
        seq_bson(low),
        seq_bson(high)
    );
}

#[test]
fn the_bson_comparator_follows_mongodbs_type_order() {
    let (null, num, text) = (
        Bson::Null,
        Bson::Int64(i64::MAX),
        Bson::String(String::new()),
    );
    assert_eq!(bson_cmp(&null, &num), Ordering::Less);
    assert_eq!(bson_cmp(&num, &text), Ordering::Less);
    assert_eq!(
        bson_cmp(&Bson::Int64(2), &Bson::Double(1.5)),
        Ordering::Greater
    );
    assert_eq!(
        bson_cmp(&Bson::Int64(1), &Bson::Double(1.0)),
        Ordering::Equal
    );
    assert_eq!(
        cmp_documents(&doc! {"a": 1_i64}, &doc! {"a": 1_i64, "b": 0_i64}),
        Ordering::Less
    );
    // Decimal128 is a number like the others: compared by value, whatever its exponent.
    let dec = |s: &str| Bson::Decimal128(s.parse().unwrap());
    assert_eq!(bson_cmp(&null, &dec("0")), Ordering::Less);
    assert_eq!(
        bson_cmp(&dec("9223372036854775808"), &num),
        Ordering::Greater
    );
    assert_eq!(bson_cmp(&dec("9223372036854775807"), &num), Ordering::Equal);
    assert_eq!(
        bson_cmp(&dec("1E+19"), &dec("10000000000000000000")),
        Ordering::Equal
    );
    assert_eq!(bson_cmp(&dec("-5"), &Bson::Int64(-4)), Ordering::Less);
    assert_eq!(
        bson_cmp(&dec("1E+19"), &Bson::Double(1e19)),
        Ordering::Equal
    );
    assert_eq!(bson_cmp(&dec("12"), &Bson::Double(11.5)), Ordering::Greater);
    assert_eq!(bson_cmp(&dec("120E-1"), &Bson::Int32(12)), Ordering::Equal);
    assert_eq!(bson_cmp(&dec("0"), &text), Ordering::Less);
}

proptest! {
    #![proptest_config(config())]

    /// `seq_to_raw` keeps the numeric order under BSON comparison, so `$max` on `last.seq`
    /// follows seq.
    #[test]
    fn seq_to_raw_keeps_the_order_of_seqs(a in seq_value(), b in seq_value()) {
        prop_assert_eq!(
            bson_cmp(&seq_bson(a), &seq_bson(b)),
            a.cmp(&b),
            "{:?} vs {:?}", seq_bson(a), seq_bson(b)
        );
    }

    /// Folding messages into `last` with `$max` keeps the newest by the README's order,
    /// whatever order they arrive in. (ts from a few values, so seq often decides.)
    #[test]
    fn max_of_last_is_the_newest_by_ts_then_seq(
        messages in prop::collection::vec(
            (0..4i64, prop::option::of(seq_value())),
            1..24,
        ),
    ) {
        let base = 1_767_225_600_000_i64;
        let mut last: Option<Document> = None;
        for &(t, seq) in &messages {
            let candidate = last_doc(base + t, seq);
            let newer = last.as_ref().is_none_or(|cur| cmp_documents(&candidate, cur) == Ordering::Greater);
            if newer {
                last = Some(candidate);
            }
        }
        let last = last.unwrap();
        let &(t, seq) = messages
            .iter()
            .max_by_key(|&&(t, seq)| readme_order(base + t, seq))
            .unwrap();
        prop_assert_eq!(
            (last.get_datetime("ts").unwrap().timestamp_millis(), last.get("seq").cloned().unwrap()),
            (base + t, seq.map_or(Bson::Null, seq_bson)),
            "{:?}", messages
        );
    }
}

/// The RFC 3339 text the generators write is the instant they mean, at every offset.
#[test]
fn rfc3339_helper_writes_the_same_instant() {
    let ms = 1_767_225_600_123;
    for offset in [-12 * 3600, 0, 14 * 3600] {
        let s = rfc3339(ms, offset);
        let back = DateTime::parse_from_rfc3339(&s)
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(back.timestamp_millis(), ms, "{s}");
    }
}
