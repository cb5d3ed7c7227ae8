//! `vectune serve`: parse the command line, load settings, run the server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use vectune::config::{Overrides, Settings};
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
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();
    let Command::Serve { config, bind, store } = Cli::parse().command;
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
    let settings = match Settings::load(
        config.as_deref(),
        &|k| std::env::var(k).ok(),
        &Overrides { bind, store },
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vectune: {}", error_chain(&e));
            return ExitCode::from(2);
        }
    };
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
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
