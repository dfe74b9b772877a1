//! How many pollers the local mapping runs, scaled the way AWS scales an SQS
//! event-source mapping: it starts with `min`; while messages wait it adds one
//! poller per [`Pollers::STEP`] (AWS: up to 300 a minute) up to `max` (AWS:
//! `ScalingConfig.MaximumConcurrency`); a poller whose long poll came back empty
//! retires while more than `min` run. Without it a mapping that falls behind at a
//! steady rate never catches up.
//!
//! "Messages wait" means more are visible than one receive by every poller takes.
//! A full receive is no such sign: producers send in batches of 10, which an idle
//! poller takes whole.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub struct Pollers {
    min: usize,
    max: usize,
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl Pollers {
    /// 300 a minute, AWS's rate of adding pollers to a standard queue's mapping.
    pub const STEP: Duration = Duration::from_millis(200);

    /// `min` is clamped to at least 1 and `max` to at least `min`.
    pub fn new(min: usize, max: usize) -> Self {
        let min = min.max(1);
        Self {
            min,
            max: max.max(min),
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    pub fn min(&self) -> usize {
        self.min
    }

    /// Counts a poller in, whether started at first or by [`Pollers::grow`].
    pub fn started(&self) {
        let live = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(live, Ordering::SeqCst);
    }

    /// Counts out a poller that exits for any reason other than [`Pollers::retire`].
    pub fn exited(&self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }

    /// Once per [`Pollers::STEP`], with the queue's visible messages: whether to
    /// start one more poller (counted in if so).
    pub fn grow(&self, visible: u64, batch_size: usize) -> bool {
        let grown = self
            .live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                let waiting = visible > (n * batch_size.min(10)) as u64;
                (waiting && n < self.max).then_some(n + 1)
            });
        if let Ok(before) = grown {
            self.peak.fetch_max(before + 1, Ordering::SeqCst);
        }
        grown.is_ok()
    }

    /// Whether [`Pollers::grow`] could start one: the queue's depth is worth asking for.
    pub fn can_grow(&self) -> bool {
        self.live() < self.max
    }

    /// A poller's long poll came back empty: whether it should exit (counted out if so).
    /// Never below `min`, even when many pollers find the queue empty at once.
    pub fn retire(&self) -> bool {
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > self.min).then_some(n - 1)
            })
            .is_ok()
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(min: usize, max: usize) -> Pollers {
        let p = Pollers::new(min, max);
        (0..p.min()).for_each(|_| p.started());
        p
    }

    #[test]
    fn grows_one_per_step_while_more_wait_than_one_round_of_receives_takes() {
        let p = started(2, 4);
        assert!(!p.grow(20, 10), "2 pollers take 20 in one round");
        assert!(p.grow(21, 10));
        assert_eq!(p.live(), 3, "one poller per step, however long the queue");
        assert!(!p.grow(21, 10), "3 pollers take 21");
        assert!(p.grow(1_000, 100), "a receive takes at most 10");
        assert!(!p.can_grow());
        assert!(!p.grow(1_000, 10), "max reached");
        assert_eq!((p.live(), p.peak()), (4, 4));
    }

    #[test]
    fn retires_down_to_min_and_no_further() {
        let p = started(2, 4);
        for _ in 0..2 {
            assert!(p.grow(1_000, 10));
        }
        assert!(p.retire() && p.retire());
        assert!(!p.retire(), "min reached");
        assert_eq!((p.live(), p.peak()), (2, 4));
    }

    #[test]
    fn concurrent_retirements_never_go_below_min() {
        let p = std::sync::Arc::new(started(3, 64));
        for _ in 0..61 {
            assert!(p.grow(10_000, 10));
        }
        let retired: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|_| s.spawn(|| usize::from(p.retire())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!((retired, p.live()), (61, 3));
    }

    #[test]
    fn bounds_are_sane() {
        let p = Pollers::new(0, 0);
        assert_eq!((p.min, p.max), (1, 1));
    }
}
