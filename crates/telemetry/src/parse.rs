//! From an SQS body (raw JSON, or base64 of it when the IoT rule sets `useBase64`) to a JSON object.

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Rejection, Rule, Unparseable};

/// AWS IoT Core refuses larger MQTT payloads, so a larger body did not come from a device.
pub const MAX_BODY_BYTES: usize = 128 * 1024;

/// Deeper nesting is refused before parsing. Far above the schema's 8 levels (a precise
/// `max_depth` violation), and far below serde_json's limit of 127, so a body the first hop
/// reads is always readable inside the writer's envelope, one level deeper.
pub const MAX_PARSE_DEPTH: usize = 100;

/// Most NaN/Infinity locations collected from one body: one is enough to refuse it, and
/// each costs a pointer as long as its path (a 128 KiB body can hold 40,000 of them).
pub const MAX_NON_FINITE_PATHS: usize = 64;

/// Stands in for a non-finite number while serde_json (which refuses them) parses the rest.
/// It holds a NUL, so no valid reading can equal it by accident of a realistic device.
const NON_FINITE_SENTINEL: &str = "\u{0}iot-bridge:non-finite";
const NON_FINITE_SENTINEL_JSON: &str = "\"\\u0000iot-bridge:non-finite\"";

/// A body that is a JSON object, plus where it held NaN/Infinity (replaced by `null`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedBody {
    pub object: Map<String, Value>,
    /// JSON Pointers of numbers that were NaN or +/-Infinity in the original text.
    pub non_finite: Vec<String>,
    /// Size of the decoded JSON text in bytes.
    pub bytes: usize,
    /// Whether the SQS body was base64.
    pub base64: bool,
}

/// Decodes, size-checks and parses an SQS body. A body that is JSON but not an
/// object is `Invalid` at the root; one that is not JSON at all is `Unparseable`.
pub fn parse_body(body: &str) -> Result<ParsedBody, Rejection> {
    parse_within(body, MAX_BODY_BYTES, MAX_PARSE_DEPTH)
}

/// [`parse_body`] with other limits (the writer's envelope holds a body, one level down,
/// plus its own fields).
pub(crate) fn parse_within(
    body: &str,
    max_bytes: usize,
    max_depth: usize,
) -> Result<ParsedBody, Rejection> {
    let (text, base64) = decode(body)?;
    if text.len() > max_bytes {
        return Err(Rejection::invalid(
            "",
            Rule::MaxBytes {
                max: max_bytes,
                actual: text.len(),
            },
        ));
    }
    let (value, non_finite) = parse_json(&text, max_depth)?;
    match value {
        Value::Object(object) => Ok(ParsedBody {
            object,
            non_finite,
            bytes: text.len(),
            base64,
        }),
        _ => Err(Rejection::invalid(
            "",
            Rule::Type {
                expected: "a JSON object",
            },
        )),
    }
}

/// Raw JSON if it looks like JSON, else base64 of UTF-8 JSON.
fn decode(body: &str) -> Result<(Cow<'_, str>, bool), Unparseable> {
    let trimmed = body.trim();
    match trimmed.as_bytes().first() {
        None => Err(Unparseable::Empty),
        Some(b'{' | b'[' | b'"') => Ok((Cow::Borrowed(trimmed), false)),
        Some(_) if !looks_like_base64(trimmed) => Err(Unparseable::NotJson(
            "does not start with '{' and is not base64".into(),
        )),
        Some(_) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(trimmed)
                .map_err(|e| Unparseable::BadBase64(e.to_string()))?;
            let text = String::from_utf8(bytes)
                .map_err(|e| Unparseable::BadUtf8(e.utf8_error().valid_up_to()))?;
            let text = text.trim().to_owned();
            if text.is_empty() {
                return Err(Unparseable::Empty);
            }
            Ok((Cow::Owned(text), true))
        }
    }
}

fn looks_like_base64(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

fn parse_json(text: &str, max_depth: usize) -> Result<(Value, Vec<String>), Unparseable> {
    let patched = replace_non_finite(text, max_depth)?;
    let mut value: Value =
        serde_json::from_str(&patched).map_err(|e| Unparseable::NotJson(e.to_string()))?;
    let mut non_finite = Vec::new();
    if matches!(patched, Cow::Owned(_)) {
        collect_sentinels(&mut value, &mut String::new(), &mut non_finite);
    }
    Ok((value, non_finite))
}

/// Replaces `NaN`, `Infinity`, `-Infinity` and numbers that overflow f64, outside
/// strings, with a sentinel string, so the rest of the body still parses and the
/// validator can name each such field. Refuses nesting deeper than `max_depth`
/// on the way (the same single pass over the text).
fn replace_non_finite(text: &str, max_depth: usize) -> Result<Cow<'_, str>, Unparseable> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0; // bytes of `text` already copied into `out`
    let mut i = 0;
    let mut in_string = false;
    let mut depth = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let token_len = match b {
            b'"' => {
                in_string = true;
                i += 1;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(Unparseable::TooDeep(max_depth));
                }
                None
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                None
            }
            b'N' if text[i..].starts_with("NaN") => Some(3),
            b'I' if text[i..].starts_with("Infinity") => Some(8),
            b'-' if text[i..].starts_with("-Infinity") => Some(9),
            b'-' | b'0'..=b'9' => {
                let len = text[i..]
                    .bytes()
                    .take_while(|c| {
                        c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')
                    })
                    .count();
                // Only an exponent or 309+ digits can overflow: skip parsing the rest.
                let token = &text[i..i + len];
                let may_overflow = len > 308 || token.bytes().any(|c| matches!(c, b'e' | b'E'));
                let overflows = may_overflow && token.parse::<f64>().is_ok_and(f64::is_infinite);
                if !overflows {
                    i += len;
                    continue;
                }
                Some(len)
            }
            _ => None,
        };
        if let Some(len) = token_len {
            let buf = out.get_or_insert_with(|| String::with_capacity(text.len() + 32));
            buf.push_str(&text[copied..i]);
            buf.push_str(NON_FINITE_SENTINEL_JSON);
            i += len;
            copied = i;
        } else {
            i += 1;
        }
    }
    Ok(match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
    })
}

fn collect_sentinels(value: &mut Value, path: &mut String, found: &mut Vec<String>) {
    match value {
        Value::String(s) if s == NON_FINITE_SENTINEL => {
            *value = Value::Null;
            if found.len() < MAX_NON_FINITE_PATHS {
                found.push(bounded_pointer(path));
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                push_pointer_token(path, k);
                collect_sentinels(v, path, found);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (idx, v) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&idx.to_string());
                collect_sentinels(v, path, found);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Longest JSON Pointer a violation keeps: a key may be 128 KiB long.
pub const MAX_POINTER_BYTES: usize = 1024;

/// `path`, cut to [`MAX_POINTER_BYTES`] (marked `...[cut]`).
pub(crate) fn bounded_pointer(path: &str) -> String {
    if path.len() <= MAX_POINTER_BYTES {
        return path.to_owned();
    }
    let mut end = MAX_POINTER_BYTES;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...[cut]", &path[..end])
}

/// Appends `/token` with RFC 6901 escaping (`~` -> `~0`, `/` -> `~1`).
pub(crate) fn push_pointer_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_base64_bodies_parse_the_same() {
        let raw = r#"{"deviceId":"d1","ts":1,"readings":{}}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        let a = parse_body(raw).unwrap();
        let b = parse_body(&b64).unwrap();
        assert_eq!(a.object, b.object);
        assert!(!a.base64 && b.base64);
    }

    #[test]
    fn non_finite_tokens_become_null_and_are_located() {
        let p = parse_body(
            r#"{"a":NaN,"b":{"c":[1,-Infinity]},"s":"NaN in a string","d":1e400,"e":2.5e3}"#,
        )
        .unwrap();
        assert_eq!(p.non_finite, vec!["/a", "/b/c/1", "/d"]);
        assert_eq!(p.object["a"], Value::Null);
        assert_eq!(p.object["s"], "NaN in a string");
        assert_eq!(p.object["e"], 2500.0);
    }

    #[test]
    fn escaped_quotes_do_not_end_strings_early() {
        let p = parse_body(r#"{"s":"say \"NaN\" \\","n":Infinity}"#).unwrap();
        assert_eq!(p.non_finite, vec!["/n"]);
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        let mut p = String::new();
        push_pointer_token(&mut p, "a/b~c");
        assert_eq!(p, "/a~1b~0c");
    }
}
