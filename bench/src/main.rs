use clap::Parser;

/// `chatnode-bench` (also run as `chatnode bench`).
#[derive(Parser)]
#[command(name = "chatnode-bench", version)]
struct Cli {
    #[command(flatten)]
    args: chatnode_bench::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    chatnode_bench::main(Cli::parse().args).await
}
