//! `vectune serve` runs the server; the other subcommands are a client of a running one
//! (see [`vectune::cli`]): parse the command line, then do one or the other.

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

/// Where the server is, for the client subcommands.
#[derive(clap::Args, Clone)]
struct Conn {
    /// The server's base URL.
    #[arg(long, env = "VECTUNE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Bearer token (admin, or read-only for reads).
    #[arg(long, env = "VECTUNE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the raw JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Jobs {
    /// Follow a job to its end with a progress bar (exit 0, 3 for an autotune that promoted
    /// nothing, 1 when it failed or was cancelled).
    Watch {
        /// The job id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// The jobs of an index, newest first.
    List {
        /// The index.
        #[arg(long)]
        index: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Tune an index on a running server and follow it: exit 0 when a winner was promoted,
    /// 3 when no trial was eligible or nothing was promoted, 1 on any error.
    Autotune {
        /// The index.
        #[arg(long)]
        index: String,
        /// The eval harness.
        #[arg(long)]
        harness: String,
        /// Recall the winner must reach.
        #[arg(long)]
        target_recall: Option<f64>,
        /// `max_recall` or `min_latency`.
        #[arg(long)]
        objective: Option<String>,
        /// `grid` or `adaptive`.
        #[arg(long)]
        strategy: Option<String>,
        /// A JSON file with an autotune request body (its index_name / harness are replaced
        /// by the flags).
        #[arg(long)]
        body: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Jobs: watch one, list an index's.
    #[command(subcommand)]
    Jobs(Jobs),
    /// The promoted config of an index and its history.
    Promoted {
        /// The index.
        index: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Roll the promotion of an index back one step.
    Rollback {
        /// The index.
        index: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Build and serve the promoted config of an index (as a job).
    Activate {
        /// The index.
        index: String,
        /// Follow the job to its end.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Append a .fvecs or .npy file to an index (ids continue from its total).
    Ingest {
        /// The index.
        index: String,
        /// The file.
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
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

/// Runs a client subcommand and maps how it ended to the exit code.
fn client(command: Command) -> ExitCode {
    use vectune::cli::{self, Client, Outcome, Output, Progress};
    let conn = match &command {
        Command::Autotune { conn, .. }
        | Command::Promoted { conn, .. }
        | Command::Rollback { conn, .. }
        | Command::Activate { conn, .. }
        | Command::Ingest { conn, .. }
        | Command::Jobs(Jobs::Watch { conn, .. } | Jobs::List { conn, .. }) => conn.clone(),
        Command::Serve { .. } => return ExitCode::from(2),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vectune: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let c = Client::new(&conn.server, conn.token.clone());
    let mut stdout = std::io::stdout();
    let mut o = Output {
        out: &mut stdout,
        progress: Progress::detect(),
        json: conn.json,
    };
    let ended = runtime.block_on(async {
        match command {
            Command::Autotune {
                index,
                harness,
                target_recall,
                objective,
                strategy,
                body,
                ..
            } => {
                let args = cli::AutotuneArgs {
                    index,
                    harness,
                    body,
                    target_recall,
                    objective,
                    strategy,
                };
                cli::autotune(&c, &args, &mut o).await
            }
            Command::Jobs(Jobs::Watch { id, .. }) => cli::watch(&c, &id, &mut o).await,
            Command::Jobs(Jobs::List { index, .. }) => cli::jobs_list(&c, &index, &mut o).await,
            Command::Promoted { index, .. } => cli::promoted(&c, &index, &mut o).await,
            Command::Rollback { index, .. } => cli::rollback(&c, &index, &mut o).await,
            Command::Activate { index, wait, .. } => cli::activate(&c, &index, wait, &mut o).await,
            Command::Ingest { index, file, .. } => cli::ingest(&c, &index, &file, &mut o).await,
            Command::Serve { .. } => unreachable!("handled by main"),
        }
    });
    match ended {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::NotPromoted) => ExitCode::from(cli::EXIT_NOT_PROMOTED),
        Err(e) => {
            eprintln!("vectune: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    let Command::Serve {
        config,
        bind,
        store,
        log_format,
    } = command
    else {
        return client(command);
    };
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
