//! `vectune serve`: parse the command line, load settings, run the server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use vectune::config::{LogFormat, Overrides, Settings};
use vectune::startup::{shutdown_signal, Application};

#[derive(Parser)]
#[command(name = "vectune", version, about = "Self-tuning HNSW vector index service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the HTTP server.
    Serve {
        /// TOML config file (see config/default.toml).
        #[arg(long, env = "VECTUNE_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on, host:port.
        #[arg(long)]
        bind: Option<String>,
        /// Store URL: a path, file:///abs, memory:// or s3://bucket/prefix.
        #[arg(long)]
        store: Option<String>,
        /// Log lines as `text` (for people) or `json` (one object a line).
        #[arg(long, value_parser = parse_log_format)]
        log_format: Option<LogFormat>,
    },
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    LogFormat::parse(s).ok_or_else(|| format!("{s:?} is not a log format: text or json"))
}

/// One subscriber for the process: `json` writes one object a line with the event's
/// fields at the top level (a request line carries method, route, status, latency_us and
/// request_id), `text` a line for people.
fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match format {
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
}

fn main() -> ExitCode {
    let Command::Serve {
        config,
        bind,
        store,
        log_format,
    } = Cli::parse().command;
    let settings = match Settings::load(
        config.as_deref(),
        &|k| std::env::var(k).ok(),
        &Overrides {
            bind,
            store,
            log_format,
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vectune: {}", error_chain(&e));
            return ExitCode::from(2);
        }
    };
    init_logs(settings.log.format);
    // the kernels are chosen once per process: refuse a cap that names no kernel before
    // anything runs, and say which kernels every distance will use
    match vectune::kernels::cap_from_env() {
        Ok(cap) => {
            let (chosen, detected) = (vectune::kernels::level(), vectune::kernels::detected());
            tracing::info!(
                kernels = chosen.as_str(),
                detected = detected.as_str(),
                cap = cap.map(|c| c.as_str()),
                "distance kernels chosen"
            );
            if cap.is_some_and(|c| c > detected) {
                tracing::warn!(
                    asked = cap.map(|c| c.as_str()),
                    detected = detected.as_str(),
                    "VECTUNE_SIMD asks for kernels this CPU lacks; using the best it has"
                );
            }
        }
        Err(e) => {
            eprintln!("vectune: {e}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vectune: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let app = Application::build(&settings).await?;
        app.run_until(shutdown_signal()).await
    });
    // a build still running on a blocking thread has written nothing yet: do not wait for it
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vectune: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    vectune::error::chain(e)
}
