//! JSON logs with `tracing`, filtered by RUST_LOG (default `info`).

use tracing_subscriber::EnvFilter;

/// For long-running services (the writer, bridgectl daemons). The Lambda uses
/// lambda_runtime's subscriber, which adds the request id to every line.
pub fn init_json() {
    init_json_with_default("info");
}

/// As [`init_json`], with another level when RUST_LOG is unset (a CLI keeps its screen quiet).
pub fn init_json_with_default(level: &str) {
    init_json_into(level, std::io::stderr);
}

fn init_json_into<W>(level: &str, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_target(true)
        .with_writer(writer)
        .try_init();
}

/// As [`init_json_with_default`], into `path` (appended, parent directories created):
/// for a command whose screen is for people, like `bridgectl demo`.
pub fn init_json_to_file(path: &std::path::Path, level: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    init_json_into(level, std::sync::Mutex::new(file));
    Ok(())
}
