//! Why a message is refused, and whether trying again could ever help.

use std::fmt;

/// Whether repeating the failed operation can succeed. Every error type in the
/// bridge answers this, so callers decide between retry and dead-letter in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The same input may succeed later (network, broker or database unavailable).
    Transient,
    /// The same input will fail the same way forever: dead-letter it.
    Permanent,
}

/// Implemented by every error enum of the bridge.
pub trait Classify {
    fn retry(&self) -> Retry;

    fn is_retryable(&self) -> bool {
        self.retry() == Retry::Transient
    }
}

/// The body cannot be read as JSON at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unparseable {
    #[error("body is empty")]
    Empty,
    #[error("body is not valid base64: {0}")]
    BadBase64(String),
    #[error("body is not valid UTF-8 (first bad byte at offset {0})")]
    BadUtf8(usize),
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body nests deeper than {0} levels")]
    TooDeep(usize),
}

/// One broken rule of the payload schema, at one place in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A required field is absent.
    Required,
    /// The value has the wrong JSON type; `expected` names the allowed ones.
    Type { expected: &'static str },
    /// `deviceId` must be 1-128 chars of `[A-Za-z0-9_.:-]`.
    DeviceIdFormat,
    /// A string is longer than allowed (counted in Unicode scalar values).
    MaxLength { max: usize },
    /// An object has more entries than allowed.
    MaxEntries { max: usize },
    /// NaN or +/-Infinity (Python's `json.dumps` writes these by default).
    NonFinite,
    /// A key starts with `$`, contains `.` or contains NUL: MongoDB would read it as an operator or a path.
    ReservedKey,
    /// Objects and arrays nest deeper than allowed.
    MaxDepth { max: usize },
    /// The decoded body is larger than AWS IoT Core accepts.
    MaxBytes { max: usize, actual: usize },
    /// `ts` is neither RFC 3339 nor integer epoch milliseconds.
    TimestampFormat,
    /// `ts` is more than the allowed skew ahead of the bridge clock.
    TimestampInFuture { max_skew_hours: i64 },
    /// `ts` is before 2000-01-01T00:00:00Z.
    TimestampTooOld,
}

impl Rule {
    /// A stable, machine-readable name for headers, metrics and the fixture manifest.
    pub fn code(&self) -> &'static str {
        match self {
            Rule::Required => "required",
            Rule::Type { .. } => "type",
            Rule::DeviceIdFormat => "device_id_format",
            Rule::MaxLength { .. } => "max_length",
            Rule::MaxEntries { .. } => "max_entries",
            Rule::NonFinite => "non_finite",
            Rule::ReservedKey => "reserved_key",
            Rule::MaxDepth { .. } => "max_depth",
            Rule::MaxBytes { .. } => "max_bytes",
            Rule::TimestampFormat => "ts_format",
            Rule::TimestampInFuture { .. } => "ts_in_future",
            Rule::TimestampTooOld => "ts_too_old",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Required => write!(f, "is required"),
            Rule::Type { expected } => write!(f, "must be {expected}"),
            Rule::DeviceIdFormat => write!(f, "must be 1-128 characters of [A-Za-z0-9_.:-]"),
            Rule::MaxLength { max } => write!(f, "must be at most {max} characters"),
            Rule::MaxEntries { max } => write!(f, "must have at most {max} entries"),
            Rule::NonFinite => write!(
                f,
                "must be a finite number (NaN and Infinity are not allowed)"
            ),
            Rule::ReservedKey => write!(f, "key must not start with '$' or contain '.' or NUL"),
            Rule::MaxDepth { max } => write!(f, "nests deeper than {max} levels"),
            Rule::MaxBytes { max, actual } => {
                write!(f, "body is {actual} bytes, over the {max}-byte limit")
            }
            Rule::TimestampFormat => write!(
                f,
                "must be an RFC 3339 string or integer epoch milliseconds"
            ),
            Rule::TimestampInFuture { max_skew_hours } => {
                write!(f, "is more than {max_skew_hours} h in the future")
            }
            Rule::TimestampTooOld => write!(f, "is before 2000-01-01T00:00:00Z"),
        }
    }
}

/// A broken rule and where: `path` is a JSON Pointer (RFC 6901) into the body, "" for the body itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub rule: Rule,
}

impl Violation {
    pub fn new(path: impl Into<String>, rule: Rule) -> Self {
        Self {
            path: path.into(),
            rule,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(body)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.rule)
    }
}

/// Why a message can never be stored. Always permanent: it goes to a dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unparseable: {0}")]
    Unparseable(Unparseable),
    #[error("invalid: {}", join(.0))]
    Invalid(Vec<Violation>),
    /// Valid by schema v1, but the database refused it (a collection validator, say).
    #[error("refused by the store: {0}")]
    Refused(String),
    /// Offsets the consumer could not read (a corrupt record batch, say): the record
    /// carries no original bytes, only the range and the broker's error.
    #[error("unreadable: {0}")]
    Unreadable(String),
}

impl Rejection {
    pub fn invalid(path: impl Into<String>, rule: Rule) -> Self {
        Rejection::Invalid(vec![Violation::new(path, rule)])
    }

    /// "unparseable", "invalid", "refused" or "unreadable", for headers and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Unparseable(_) => "unparseable",
            Rejection::Invalid(_) => "invalid",
            Rejection::Refused(_) => "refused",
            Rejection::Unreadable(_) => "unreadable",
        }
    }

    pub fn violations(&self) -> &[Violation] {
        match self {
            Rejection::Unparseable(_) | Rejection::Refused(_) | Rejection::Unreadable(_) => &[],
            Rejection::Invalid(v) => v,
        }
    }

    /// Every violation as JSON `[{"path","rule","message"}]`, for a dead-letter header.
    pub fn violations_json(&self) -> String {
        self.violations_json_within(usize::MAX)
    }

    /// [`Self::violations_json`] in at most `max` bytes (at least 128), still valid JSON:
    /// long paths are cut, and violations that do not fit are counted in a last entry
    /// with rule `omitted`.
    pub fn violations_json_within(&self, max: usize) -> String {
        const PATH_MAX: usize = 256;
        let entry = |path: &str, rule: &str, message: &str| {
            serde_json::json!({"path": path, "rule": rule, "message": message}).to_string()
        };
        let budget = max.max(128) - 96; // room for the `omitted` entry and the brackets
        let all = self.violations();
        let mut out = String::from("[");
        for (i, v) in all.iter().enumerate() {
            let path = Bounded(&v.path, PATH_MAX).to_string();
            let message = if path.len() == v.path.len() {
                v.to_string()
            } else {
                format!("{path}: {}", v.rule)
            };
            let e = entry(&path, v.rule.code(), &message);
            if out.len() + e.len() + 1 > budget {
                let omitted = all.len() - i;
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&entry("", "omitted", &format!("{omitted} more violations")));
                break;
            }
            if i > 0 {
                out.push(',');
            }
            out.push_str(&e);
        }
        out.push(']');
        out
    }
}

impl From<Unparseable> for Rejection {
    fn from(e: Unparseable) -> Self {
        Rejection::Unparseable(e)
    }
}

impl Classify for Rejection {
    fn retry(&self) -> Retry {
        Retry::Permanent
    }
}

/// At most this many bytes of one rejection go into a log line: violation paths carry the
/// payload's key names, and a body may be 128 KiB of them.
pub const LOG_MAX_BYTES: usize = 1024;

/// Displays at most `max` bytes of a value (cut on a character boundary, marked `...[cut]`),
/// without formatting the rest of it.
pub struct Bounded<'a, T: ?Sized>(pub &'a T, pub usize);

impl<T: fmt::Display + ?Sized> fmt::Display for Bounded<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Limit<'a, 'b> {
            out: &'a mut fmt::Formatter<'b>,
            left: usize,
            cut: bool,
        }
        impl fmt::Write for Limit<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                if s.len() <= self.left {
                    self.left -= s.len();
                    return self.out.write_str(s);
                }
                let mut end = self.left;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                self.out.write_str(&s[..end])?;
                self.cut = true;
                Err(fmt::Error)
            }
        }
        let mut limit = Limit {
            out: f,
            left: self.1,
            cut: false,
        };
        match fmt::write(&mut limit, format_args!("{}", self.0)) {
            Err(_) if limit.cut => limit.out.write_str("...[cut]"),
            other => other,
        }
    }
}

impl Rejection {
    /// The reason as a log line may carry it (see [`LOG_MAX_BYTES`]).
    pub fn for_log(&self) -> Bounded<'_, Self> {
        Bounded(self, LOG_MAX_BYTES)
    }
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_carries_at_most_the_bound_and_says_it_was_cut() {
        let long_key = "k".repeat(100_000);
        let r = Rejection::invalid(format!("/readings/{long_key}"), Rule::ReservedKey);
        let line = r.for_log().to_string();
        assert!(
            line.len() <= LOG_MAX_BYTES + "...[cut]".len(),
            "{}",
            line.len()
        );
        assert!(line.starts_with("invalid: /readings/kkk"), "{line}");
        assert!(line.ends_with("...[cut]"), "{line}");
    }

    #[test]
    fn the_violations_header_stays_valid_json_within_its_bound() {
        let many: Vec<Violation> = (0..2_000)
            .map(|i| {
                Violation::new(
                    format!("/readings/{}{i}", "x".repeat(300)),
                    Rule::ReservedKey,
                )
            })
            .collect();
        let json = Rejection::Invalid(many).violations_json_within(8 * 1024);
        assert!(json.len() <= 8 * 1024, "{}", json.len());
        let list: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let last = list.last().unwrap();
        assert_eq!(last["rule"], "omitted");
        assert!(
            last["message"]
                .as_str()
                .unwrap()
                .ends_with("more violations")
        );
        assert!(list[0]["path"].as_str().unwrap().ends_with("...[cut]"));
        let one = Rejection::invalid("/deviceId", Rule::Required);
        assert_eq!(one.violations_json_within(8 * 1024), one.violations_json());
    }

    #[test]
    fn a_short_reason_is_untouched_and_a_cut_never_splits_a_character() {
        let r = Rejection::invalid("/deviceId", Rule::Required);
        assert_eq!(r.for_log().to_string(), r.to_string());
        let s = "é".repeat(10);
        assert_eq!(Bounded(&s, 5).to_string(), "éé...[cut]");
    }
}
