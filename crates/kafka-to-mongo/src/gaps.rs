//! Offsets skipped after a consumption error. librdkafka reports a record batch it
//! cannot read (a CRC mismatch, say) as an error without an offset, then goes on
//! past it. Offsets have legitimate gaps too (transaction markers, compaction), so
//! only a gap that follows an error on the partition counts as unread: it is
//! dead-lettered as a range, never committed past silently.

/// Offsets `from..=to` of the partition were not read; `error` is the broker's word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub from: i64,
    pub to: i64,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct GapWatch {
    last: Option<i64>,
    error: Option<String>,
}

impl GapWatch {
    /// A consumption error on this partition.
    pub fn error(&mut self, error: String) {
        self.error = Some(error);
    }

    /// The next message's offset: the range skipped since the last one, when a
    /// consumption error came in between.
    pub fn next(&mut self, offset: i64) -> Option<Unreadable> {
        let error = self.error.take();
        let gap = match (self.last, error) {
            (Some(last), Some(error)) if offset > last + 1 => Some(Unreadable {
                from: last + 1,
                to: offset - 1,
                error,
            }),
            _ => None,
        };
        self.last = Some(offset);
        gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gap_after_an_error_is_unread() {
        let mut w = GapWatch::default();
        assert_eq!(
            w.next(10),
            None,
            "the first message: nothing known before it"
        );
        assert_eq!(
            w.next(13),
            None,
            "a gap without an error: markers or compaction"
        );
        w.error("Local: Bad message format".into());
        assert_eq!(w.next(14), None, "an error, but nothing skipped");
        assert_eq!(w.next(15), None, "the error is spent");
        w.error("Local: Bad message format".into());
        assert_eq!(
            w.next(20),
            Some(Unreadable {
                from: 16,
                to: 19,
                error: "Local: Bad message format".into()
            })
        );
        assert_eq!(w.next(21), None);
    }
}
