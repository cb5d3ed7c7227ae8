//! Building and running the server: settings → store → service → router → listener.

use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::http::{router_with, HttpOptions, RouterLimits, Tokens};
use crate::service::{ServiceError, ServiceOptions, Vectune};
use crate::storage::{Storage, StorageError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] StorageError),
    /// The registry cannot be loaded.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A setting is out of range.
    #[error(transparent)]
    Settings(#[from] crate::config::ConfigError),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server failed")]
    Serve(#[source] std::io::Error),
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    app: axum::Router,
    service: Vectune,
}

impl Application {
    /// Opens the store, loads the registry and binds the listener.
    pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
        let storage = Storage::open(&settings.store.url, &settings.store.s3)?;
        tracing::info!(store = storage.describe(), "store opened");
        let build = settings.build.options();
        tracing::info!(
            engine = build.engine.as_str(),
            threads = build.threads,
            "graph builds"
        );
        let monitor = settings.monitor.settings()?;
        let options = ServiceOptions {
            build_concurrency: settings.build.concurrency,
            build_options: build,
            monitor,
            max_queued_jobs: settings.limits.max_queued_jobs,
            fleet: settings.leases.options(),
            bounds: settings.tuning.bounds()?,
            run_graph_bytes: settings.tuning.run_graph_bytes()?,
            fleet_builds: settings.tuning.fleet_builds,
        };
        let service = Vectune::open_with(storage, options).await?;
        let listener =
            TcpListener::bind(&settings.server.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.server.bind.clone(),
                    source,
                })?;
        let auth = &settings.auth;
        let tokens = Tokens::new(
            auth.token.as_ref().map(|t| t.expose()),
            auth.read_token.as_ref().map(|t| t.expose()),
        );
        tracing::info!(
            auth = if tokens.enabled() {
                "bearer token"
            } else {
                "off (no token configured)"
            },
            read_only_token = auth.read_token.is_some(),
            "API access"
        );
        let app = router_with(
            service.clone(),
            HttpOptions {
                limits: RouterLimits {
                    max_body_bytes: settings.limits.max_body_bytes,
                    max_binary_body_bytes: settings.limits.max_binary_body_bytes,
                    max_ingest_bytes_in_flight: settings.limits.max_ingest_bytes_in_flight,
                },
                tokens,
                request_timeout: Duration::from_secs_f64(settings.limits.request_timeout_secs),
            },
        );
        Ok(Application {
            listener,
            app,
            service,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    /// Re-activation of previously active indexes starts in the background, so `/health`
    /// answers at once.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let addr = self.local_addr().map_err(StartupError::Serve)?;
        let reactivation = self.service.reactivate_all();
        let agents = self.service.clone();
        tokio::spawn(async move {
            match agents.start_agents().await {
                Ok(n) => tracing::info!(agents = n, "background agents started"),
                Err(e) => tracing::error!(error = %e, "background agents could not be started"),
            }
        });
        tracing::info!("listening on http://{addr}");
        // answers are small: send them at once instead of waiting on Nagle's algorithm
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        // at the signal: /ready turns 503, jobs, agents and sync runs stop at their next
        // step (a sync request cut short answers 503 shutting_down), then in-flight
        // requests finish
        let stopping = self.service.clone();
        let shutdown = async move {
            shutdown.await;
            stopping.stop_background();
        };
        let served = axum::serve(listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(StartupError::Serve);
        reactivation.abort();
        self.service.stop_background();
        // gone from the fleet at once: other instances reap this one's unfinished jobs
        // and take its leases without waiting for the TTL
        self.service.leave_fleet().await;
        tracing::info!("stopped");
        served
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
