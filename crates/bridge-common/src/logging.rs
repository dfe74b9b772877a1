//! JSON logs with `tracing`, filtered by RUST_LOG (default `info`).

use tracing_subscriber::EnvFilter;

/// For long-running services (the writer, bridgectl daemons). The Lambda uses
/// lambda_runtime's subscriber, which adds the request id to every line.
pub fn init_json() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_target(true)
        .with_writer(std::io::stderr)
        .try_init();
}
