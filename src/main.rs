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
    /// Manage users, tokens and rooms in the node's database; drain a running node.
    Admin(chatnode::admin::AdminArgs),
    /// Drive running nodes with real HTTP and WebSocket load (runs `chatnode-bench`).
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
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

fn main() -> anyhow::Result<()> {
    tune_allocator();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run())
}

/// glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after
/// which multi-megabyte buffers (argon2 memory for a stored hash of a higher cost, request
/// bodies, replays) come from the heap arenas and are kept after `free`: measured, RSS stayed
/// at gigabytes after a hashing flood. A fixed threshold keeps every block of 128 KiB or
/// more in its own mapping, returned to the kernel when freed; a trim threshold of the same
/// size gives back the top of the heap, and a few arenas bound per-thread fragmentation.
/// Called before any thread starts, as mallopt asks.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tunables; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

async fn run() -> anyhow::Result<()> {
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
            on_drain_signal(app.drain_trigger())?;
            app.run().await;
        }
        Command::Migrate(config) => {
            init_logging(config.log_format);
            chatnode::store::open(&config.database_url())
                .await
                .context("migration failed")?;
            tracing::info!("database is up to date");
        }
        Command::Admin(args) => run_admin(args).await,
        Command::Bench { args } => run_bench(&args)?,
    }
    Ok(())
}

/// Prints the report, or the error as one line with exit code 1. Logs go to stderr, so
/// `--json` output stays clean.
async fn run_admin(args: chatnode::admin::AdminArgs) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let json = args.json;
    match chatnode::admin::run(args).await {
        Ok(report) => println!("{}", report.render(json)),
        Err(error) => {
            eprintln!("chatnode admin: {error}");
            std::process::exit(1);
        }
    }
}

/// `chatnode admin node drain` signals SIGUSR1 (a second one ends the grace); installed
/// before serving, since the signal's default action would end the process.
fn on_drain_signal(mut drain: impl FnMut() + Send + 'static) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut drains = signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?;
        tokio::spawn(async move {
            while drains.recv().await.is_some() {
                drain();
            }
        });
    }
    #[cfg(not(unix))]
    drop(drain);
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

/// Runs `chatnode-bench` as git runs its subcommands: CHATNODE_BENCH_BIN, else next to this
/// executable, else on PATH. The bench is its own crate so the server carries none of its
/// dependencies.
fn run_bench(args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let bin = std::env::var_os("CHATNODE_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let beside = std::env::current_exe()
                .ok()?
                .with_file_name("chatnode-bench");
            beside.is_file().then_some(beside)
        })
        .unwrap_or_else(|| "chatnode-bench".into());
    let err = std::process::Command::new(&bin).args(args).exec();
    anyhow::bail!(
        "cannot run {} ({err}): build it with `cargo build --release -p chatnode-bench` \
         (or point CHATNODE_BENCH_BIN at it)",
        bin.display()
    )
}
