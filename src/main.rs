use anyhow::Context;
use chatnode::config::{Config, LogFormat};
use chatnode::Application;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "chatnode",
    version,
    about = "A WhatsApp-style chat server in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node: REST API, WebSocket endpoint and real-time fan-out.
    Serve(Config),
    /// Apply pending database migrations and exit.
    Migrate(Config),
    /// Drive running nodes with real HTTP and WebSocket load and report what they do.
    Bench(chatnode::bench::BenchArgs),
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A failed log write would otherwise be reported with `eprintln!`, which panics when
    // stderr is gone too: a node whose log collector died must keep serving (and stopping).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => return Err(e).context("cannot read .env"),
    }
    match Cli::parse().command {
        Command::Serve(config) => {
            init_logging(config.log_format);
            let app = Application::build(config)
                .await
                .context("cannot start chatnode")?;
            let shutdown = app.shutdown_token();
            tokio::spawn(async move {
                wait_for_signal().await;
                shutdown.cancel();
                tracing::info!("shutdown requested");
            });
            app.run().await;
        }
        Command::Migrate(config) => {
            init_logging(config.log_format);
            chatnode::store::open(&config.database_url())
                .await
                .context("migration failed")?;
            tracing::info!("database is up to date");
        }
        Command::Bench(args) => chatnode::bench::main(args).await?,
    }
    Ok(())
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
