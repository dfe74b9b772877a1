//! `kafka-to-mongo`: runs until SIGTERM or SIGINT, then shuts down gracefully and exits 0.
//! `kafka-to-mongo healthcheck`: exits 0 when the running writer's `/healthz` answers 2xx
//! (the container health check: the image has no shell and no curl).

use std::process::ExitCode;

use clap::Parser;
use kafka_to_mongo::Config;

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "healthcheck")
    {
        return healthcheck();
    }
    let config = Config::parse();
    bridge_common::logging::init_json();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2.max(num_cpus()))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kafka-to-mongo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kafka_to_mongo::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "kafka-to-mongo failed");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck() -> ExitCode {
    let env = |name| std::env::var(name).ok();
    let probe =
        kafka_to_mongo::probe::target(env("HEALTH_PORT").as_deref(), env("HEALTH_BIND").as_deref())
            .and_then(kafka_to_mongo::probe::check);
    match probe {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kafka-to-mongo healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the writer");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}
