//! The `mailpulse` binary: parse the command line, start logging, then
//! serve (optionally with demo traffic) or simulate.

use clap::Parser;
use mailpulse::config::{Cli, Command, Config, ServeArgs};
use std::io::IsTerminal;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// mimalloc: ingest allocates and frees many small objects per request
/// across threads, where glibc's malloc cost ~9 % of the server's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn")),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    match cli.command {
        Some(Command::Simulate(args)) => simulate(args).await,
        Some(Command::Serve(args)) => serve(args).await,
        None => serve(cli.serve).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let demo = args.demo;
    let mut config = Config::load(args)?;
    if demo {
        let (transactional, names) = mailpulse::sim::demo_mailings();
        config.mailings.transactional.extend(transactional);
        for (id, name) in names {
            config.mailings.names.entry(id).or_insert(name);
        }
    }
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.addr))?;
    let addr = listener.local_addr()?;
    let secret = config
        .webhook_secret
        .as_ref()
        .map(|s| s.expose().to_string());
    let token = config.api_token.as_ref().map(|s| s.expose().to_string());
    let server = mailpulse::Server::start(config)?;
    if demo {
        let stop = server.state().shutdown.clone();
        tracing::info!("demo mode: simulated traffic is being sent to this server");
        tokio::spawn(mailpulse::sim::demo(
            format!("http://{addr}"),
            secret,
            token,
            stop,
        ));
    }
    server.serve(listener, mailpulse::shutdown_signal()).await
}

async fn simulate(args: mailpulse::sim::SimArgs) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        mailpulse::shutdown_signal().await;
        on_signal.cancel();
    });
    let report = mailpulse::sim::run(&args, stop).await?;
    println!(
        "sent {} events ({} stored, {} duplicates), {} dispatch reports, {} failed requests",
        report.events_sent,
        report.accepted,
        report.duplicates,
        report.dispatches,
        report.failed_requests
    );
    if report.failed_requests > 0 {
        anyhow::bail!("{} requests failed after retries", report.failed_requests);
    }
    Ok(())
}
