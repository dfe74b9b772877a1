//! Offsets skipped after a consumption error. librdkafka reports a record batch it
//! cannot read (a CRC mismatch, say) as an error without an offset, then goes on
//! past it. Offsets have legitimate gaps too (transaction markers, compaction), so
//! only a gap that follows an error on the partition counts as unread: it is
//! dead-lettered as a range, never committed past silently.
//!
//! librdkafka can also lose its place after such an error (it read on into the
//! broken bytes, and its next fetch asks for an offset that does not exist): the
//! partition then goes silent with records waiting. So after an error, a worker
//! that hears nothing while the high watermark is past its last offset seeks back
//! to the offset after it (a batch corrupted in transit reads fine again), then,
//! if that is not read either, forward in doubling steps until a record arrives:
//! the gap before it is what could not be read.

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
    /// Seeks made since the error, without a record arriving.
    probes: u32,
}

impl GapWatch {
    /// A consumption error on this partition.
    pub fn error(&mut self, error: String) {
        self.error = Some(error);
    }

    /// Whether a consumption error is waiting for the next record.
    pub fn after_error(&self) -> bool {
        self.error.is_some()
    }

    /// Where to seek when, after an error, nothing arrived though the partition's
    /// high watermark is `high`: None when nothing is waiting (or nothing was read
    /// yet to count from). First the offset after the last one read, then forward
    /// by 1, 2, 4, ... past it, never beyond the last record.
    pub fn probe(&mut self, high: i64) -> Option<i64> {
        let last = self.last?;
        self.error.as_ref()?;
        if high <= last + 1 {
            self.error = None;
            self.probes = 0;
            return None;
        }
        let step = if self.probes == 0 {
            1
        } else {
            1_i64 << self.probes.min(40)
        };
        self.probes += 1;
        Some((last + step).min(high - 1))
    }

    /// The next message's offset: the range skipped since the last one, when a
    /// consumption error came in between.
    pub fn next(&mut self, offset: i64) -> Option<Unreadable> {
        self.probes = 0;
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

    #[test]
    fn a_silent_partition_after_an_error_is_read_again_then_probed_forward() {
        let mut w = GapWatch::default();
        assert_eq!(w.probe(100), None, "nothing read yet");
        w.next(19);
        assert_eq!(
            w.probe(100),
            None,
            "no error: an idle partition is left alone"
        );
        w.error("Local: Bad message format".into());
        assert_eq!(w.probe(20), None, "nothing waiting past offset 19");
        w.error("Local: Bad message format".into());
        let probes: Vec<i64> = std::iter::from_fn(|| w.probe(121)).take(8).collect();
        assert_eq!(
            probes,
            [20, 21, 23, 27, 35, 51, 83, 120],
            "again, then doubling, capped"
        );
        assert_eq!(
            w.next(120),
            Some(Unreadable {
                from: 20,
                to: 119,
                error: "Local: Bad message format".into()
            })
        );
        assert!(!w.after_error());
    }
}
