//! mailpulse's server: ingests Optimizely webhooks, keeps live aggregates,
//! pushes them to dashboards over websockets and renders the Leptos UI.
//!
//! [`run`] is the whole server given a bound listener; `main` only parses
//! configuration and calls it, and the integration tests call it on port 0.

// Leptos views nest deep types; the server instantiates them all.
#![recursion_limit = "256"]

pub mod alerts;
pub mod config;
pub mod error;
pub mod hub;
pub mod ingest;
pub mod metrics;
pub mod optimizely;
pub mod sim;
pub mod store;
pub mod web;

use axum::extract::FromRef;
use config::Config;
use leptos::config::LeptosOptions;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The handles shared by every request handler, behind one `Arc`: axum
/// clones the state for every request, and cloning one pointer is cheaper
/// than the dozen reference counts of the fields.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub leptos: LeptosOptions,
    pub live: metrics::LiveHandle,
    pub store: store::Store,
    pub sources: ingest::Sources,
    /// Optimizely's REST API, when credentials are configured.
    pub optimizely: Option<Arc<optimizely::Optimizely>>,
    /// What `/metrics` reports.
    pub telemetry: Arc<prometheus_client::registry::Registry>,
    /// Cancelled when the server shuts down; long-lived tasks and websocket
    /// connections watch it.
    pub shutdown: CancellationToken,
    ready: Arc<AtomicBool>,
}

impl AppState {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// Runs the server on `listener` until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Server::start(config)?.serve(listener, shutdown).await
}

/// A started server: store open, engine running, not yet serving. Tests
/// keep its [`AppState`] to reach the store and the engine directly.
pub struct Server {
    state: AppState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Opens the store and starts the background tasks.
    pub fn start(config: Config) -> anyhow::Result<Server> {
        let token = CancellationToken::new();
        let leptos = LeptosOptions::builder()
            .output_name("mailpulse")
            .site_root(config.site_root.to_string_lossy().to_string())
            .site_pkg_dir("pkg")
            .site_addr(config.addr)
            .build();
        let (live, engine_parts) = metrics::channels();
        let store = store::Store::open(&config, live.clone())?;
        let ready = Arc::new(AtomicBool::new(false));
        let (channel_refs, channels) = alerts::channels(&config)?;
        let config = Arc::new(config);
        let engine = metrics::engine::spawn(
            engine_parts,
            store.clone(),
            metrics::EngineConfig {
                tick: Duration::from_millis(config.live.tick_ms),
                config: config.clone(),
                channels: channel_refs,
            },
            ready.clone(),
            token.clone(),
        );
        let notifier = tokio::spawn(alerts::notify::run(store.clone(), channels, token.clone()));
        let state = AppState(Arc::new(Shared {
            optimizely: config
                .optimizely
                .clone()
                .map(|o| Arc::new(optimizely::Optimizely::new(o))),
            telemetry: web::telemetry::registry(&store, &live.hub),
            sources: ingest::Sources::from_config(&config),
            config,
            leptos,
            live,
            store: store.clone(),
            shutdown: token.clone(),
            ready,
        }));
        let tasks = vec![
            engine,
            notifier,
            tokio::spawn(store::retention::run(
                store,
                state.config.store.clone(),
                token,
            )),
        ];
        Ok(Server { state, tasks })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` completes, then stops the
    /// background tasks and closes the store.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server { state, tasks } = self;
        let addr = listener.local_addr()?;
        let token = state.shutdown.clone();
        let store = state.store.clone();
        let app = web::router(state);
        tracing::info!(%addr, "mailpulse listening");

        let stop = token.clone();
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down");
            stop.cancel();
        };
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(graceful)
        .await?;
        token.cancel();
        for t in tasks {
            let _ = t.await;
        }
        // Everything answered 200 is already committed; this only lets the
        // writer finish what is queued and close the file cleanly.
        store.close().await;
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
