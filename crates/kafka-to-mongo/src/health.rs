//! `/healthz` (liveness: the consumer loop is turning) and `/readyz` (readiness:
//! started, MongoDB writable, not shutting down), for the ECS health check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// The consumer loop ticks every 200 ms; this much silence means it is stuck.
const STALL_MS: u64 = 30_000;

#[derive(Debug)]
pub struct Health {
    started: AtomicBool,
    store_ok: AtomicBool,
    stopping: AtomicBool,
    last_tick_ms: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            started: AtomicBool::new(false),
            store_ok: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            last_tick_ms: AtomicU64::new(now_ms()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Health {
    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub fn set_store_ok(&self, ok: bool) {
        self.store_ok.store(ok, Ordering::SeqCst);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn tick(&self) {
        self.last_tick_ms.store(now_ms(), Ordering::SeqCst);
    }

    fn live(&self) -> Result<(), String> {
        let silent = now_ms().saturating_sub(self.last_tick_ms.load(Ordering::SeqCst));
        if silent > STALL_MS {
            Err(format!("consumer loop silent for {silent} ms"))
        } else {
            Ok(())
        }
    }

    fn ready(&self) -> Result<(), &'static str> {
        if self.stopping.load(Ordering::SeqCst) {
            Err("shutting down")
        } else if !self.started.load(Ordering::SeqCst) {
            Err("starting")
        } else if !self.store_ok.load(Ordering::SeqCst) {
            Err("MongoDB writes are failing (retrying)")
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
