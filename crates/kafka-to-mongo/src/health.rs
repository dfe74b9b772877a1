//! `/healthz` (liveness) and `/readyz` (readiness), for the ECS health check.
//!
//! - Liveness fails only where a restart helps: the consumer loop stopped turning,
//!   a worker holding a batch made no attempt for `STALL_TIMEOUT_MS` (every call
//!   has a deadline and every backoff a cap, so a live worker attempts well within
//!   it), or a cancelled worker never ended.
//! - Readiness fails while starting, stopping, or while MongoDB or the dead-letter
//!   topic is failing and being retried: a restart would not help there, so the
//!   task is kept, and the reason is in the body.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// The consumer loop ticks every 200 ms; this much silence means it is stuck.
const LOOP_STALL_MS: u64 = 30_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What one partition worker is doing, for the stall check.
#[derive(Debug, Default)]
pub struct Activity {
    busy: AtomicBool,
    since_ms: AtomicU64,
}

impl Activity {
    /// Holding a batch (or waiting for room for one) from now on.
    pub fn busy(&self) {
        self.since_ms.store(now_ms(), Ordering::SeqCst);
        self.busy.store(true, Ordering::SeqCst);
    }

    /// A new attempt (a write, a dead-letter send): progress, even if it fails.
    pub fn attempt(&self) {
        self.since_ms.store(now_ms(), Ordering::SeqCst);
    }

    /// Waiting for messages: nothing to be late with.
    pub fn idle(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }

    /// Milliseconds since the last attempt, while busy.
    fn stalled_for(&self, now: u64) -> Option<u64> {
        self.busy
            .load(Ordering::SeqCst)
            .then(|| now.saturating_sub(self.since_ms.load(Ordering::SeqCst)))
    }
}

/// A dependency being retried: the task is not ready, and says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    MongoDb,
    DeadLetterTopic,
}

#[derive(Debug)]
pub struct Health {
    started: AtomicBool,
    stopping: AtomicBool,
    mongo_failing: AtomicBool,
    dlq_failing: AtomicBool,
    /// A cancelled worker that did not end: its partition is not read again here.
    stuck_worker: AtomicBool,
    last_tick_ms: AtomicU64,
    stall_ms: u64,
    workers: Mutex<HashMap<i32, Arc<Activity>>>,
}

impl Health {
    pub fn new(stall: Duration) -> Self {
        Self {
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            mongo_failing: AtomicBool::new(false),
            dlq_failing: AtomicBool::new(false),
            stuck_worker: AtomicBool::new(false),
            last_tick_ms: AtomicU64::new(now_ms()),
            stall_ms: stall.as_millis() as u64,
            workers: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn set_failing(&self, dependency: Dependency, failing: bool) {
        let flag = match dependency {
            Dependency::MongoDb => &self.mongo_failing,
            Dependency::DeadLetterTopic => &self.dlq_failing,
        };
        flag.store(failing, Ordering::SeqCst);
    }

    pub fn set_stuck_worker(&self) {
        self.stuck_worker.store(true, Ordering::SeqCst);
    }

    pub fn tick(&self) {
        self.last_tick_ms.store(now_ms(), Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Arc<Activity>>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, partition: i32, activity: Arc<Activity>) {
        self.lock().insert(partition, activity);
    }

    pub fn unregister(&self, partition: i32, activity: &Arc<Activity>) {
        let mut workers = self.lock();
        if workers
            .get(&partition)
            .is_some_and(|a| Arc::ptr_eq(a, activity))
        {
            workers.remove(&partition);
        }
    }

    /// Partitions whose worker made no attempt for longer than the stall timeout.
    pub fn stalled(&self) -> Vec<(i32, u64)> {
        let now = now_ms();
        let mut out: Vec<(i32, u64)> = self
            .lock()
            .iter()
            .filter_map(|(p, a)| a.stalled_for(now).map(|ms| (*p, ms)))
            .filter(|(_, ms)| *ms > self.stall_ms)
            .collect();
        out.sort_unstable();
        out
    }

    pub fn live(&self) -> Result<(), String> {
        let silent = now_ms().saturating_sub(self.last_tick_ms.load(Ordering::SeqCst));
        if silent > LOOP_STALL_MS && self.started.load(Ordering::SeqCst) {
            return Err(format!("consumer loop silent for {silent} ms"));
        }
        if self.stuck_worker.load(Ordering::SeqCst) {
            return Err("a cancelled partition worker did not end".to_owned());
        }
        match self.stalled().first() {
            Some((p, ms)) => Err(format!(
                "partition {p}: no attempt for {ms} ms while holding a batch"
            )),
            None => Ok(()),
        }
    }

    pub fn ready(&self) -> Result<(), &'static str> {
        if self.stopping.load(Ordering::SeqCst) {
            Err("shutting down")
        } else if !self.started.load(Ordering::SeqCst) {
            Err("starting: waiting for MongoDB and Kafka")
        } else if self.mongo_failing.load(Ordering::SeqCst) {
            Err("MongoDB unavailable or not answering (retrying)")
        } else if self.dlq_failing.load(Ordering::SeqCst) {
            Err("dead-letter topic unavailable (retrying)")
        } else {
            Ok(())
        }
    }
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|State(h): State<Arc<Health>>| async move {
                match h.live() {
                    Ok(()) => (StatusCode::OK, "ok".to_owned()),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                }
            }),
        )
        .route(
            "/readyz",
            get(|State(h): State<Arc<Health>>| async move {
                match h.ready() {
                    Ok(()) => (StatusCode::OK, "ready"),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                }
            }),
        )
        .with_state(health)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_worker_without_attempts_past_the_stall_timeout_is_not_live() {
        let health = Health::new(Duration::from_millis(50));
        let a = Arc::new(Activity::default());
        health.register(3, Arc::clone(&a));
        a.busy();
        assert!(health.live().is_ok());
        a.since_ms.store(now_ms() - 1_000, Ordering::SeqCst);
        let why = health.live().unwrap_err();
        assert!(why.contains("partition 3"), "{why}");
        a.attempt();
        assert!(health.live().is_ok(), "an attempt is progress");
        a.since_ms.store(now_ms() - 1_000, Ordering::SeqCst);
        a.idle();
        assert!(
            health.live().is_ok(),
            "an idle worker waits for messages, not on us"
        );
    }

    #[test]
    fn retrying_a_dependency_is_not_ready_but_alive() {
        let health = Health::new(Duration::from_secs(60));
        assert_eq!(
            health.ready(),
            Err("starting: waiting for MongoDB and Kafka")
        );
        health.set_started();
        assert!(health.ready().is_ok());
        health.set_failing(Dependency::DeadLetterTopic, true);
        assert!(health.ready().unwrap_err().contains("dead-letter"));
        health.set_failing(Dependency::MongoDb, true);
        assert!(health.ready().unwrap_err().contains("MongoDB"));
        assert!(health.live().is_ok());
        health.set_stuck_worker();
        assert!(health.live().is_err());
    }

    #[test]
    fn a_replaced_worker_does_not_unregister_its_successor() {
        let health = Health::new(Duration::from_millis(1));
        let (old, new) = (Arc::new(Activity::default()), Arc::new(Activity::default()));
        health.register(1, Arc::clone(&old));
        health.register(1, Arc::clone(&new));
        health.unregister(1, &old);
        new.busy();
        new.since_ms.store(0, Ordering::SeqCst);
        assert_eq!(health.stalled().len(), 1);
    }
}
