//! `--spawn`: nodes of this very binary on free loopback ports sharing a fresh data directory,
//! stopped (and the directory removed) when the bench is done.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chatnode_client::{Launch, NodeProcess};

const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The spawned nodes and the data directory they share (the SQLite file, unless their
/// arguments name another database, and the uploads).
pub struct SpawnedNodes {
    pub nodes: Vec<SpawnedNode>,
    dir: PathBuf,
}

impl SpawnedNodes {
    /// Starts `count` nodes one after the other, each with `serve` plus `extra_args`; the
    /// caller raised the open-files limit, which they inherit.
    pub async fn start(count: usize, extra_args: &[String]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "chatnode-bench-{}-{}",
            std::process::id(),
            super::load::tag()
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut spawned = Self {
            nodes: Vec::with_capacity(count),
            dir,
        };
        for index in 0..count {
            match SpawnedNode::start(&spawned.dir, index, extra_args).await {
                Ok(node) => spawned.nodes.push(node),
                Err(e) => {
                    spawned.stop().await?;
                    return Err(e);
                }
            }
        }
        Ok(spawned)
    }

    /// Stops every node (all are tried), then removes the shared directory.
    pub async fn stop(self) -> anyhow::Result<()> {
        let mut outcome = Ok(());
        for node in self.nodes {
            let stopped = node.stop().await;
            if outcome.is_ok() {
                outcome = stopped;
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        outcome
    }
}

pub struct SpawnedNode {
    process: NodeProcess,
    pub url: String,
    pub pid: i32,
}

impl SpawnedNode {
    async fn start(dir: &Path, index: usize, extra_args: &[String]) -> anyhow::Result<Self> {
        let process = Launch::new(node_bin()?)
            // The bench is one client address sending as fast as it is asked to.
            .args(["--rate-limits", "off"])
            .arg("--data-dir")
            .arg(dir)
            .args(extra_args)
            .log_file(dir.join(format!("node-{index}.log")))
            .start()
            .await
            .context("cannot start chatnode serve")?;
        Ok(Self {
            url: process.url().to_string(),
            pid: process.pid() as i32,
            process,
        })
    }

    /// SIGTERM, a bounded wait for the graceful exit, then SIGKILL.
    async fn stop(mut self) -> anyhow::Result<()> {
        self.process
            .terminate(STOP_TIMEOUT)
            .await
            .context("stopping the node")?;
        Ok(())
    }
}

/// The node binary `--spawn` starts: CHATNODE_BENCH_NODE_BIN, else `chatnode` next to this
/// executable (both are built into the same target directory).
fn node_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CHATNODE_BENCH_NODE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    Ok(std::env::current_exe()?.with_file_name("chatnode"))
}
