//! `--spawn`: nodes of this very binary on free loopback ports sharing a fresh data directory,
//! stopped (and the directory removed) when the bench is done.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

const START_TIMEOUT: Duration = Duration::from_secs(30);
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
    child: Child,
    pub url: String,
    pub pid: i32,
}

impl SpawnedNode {
    async fn start(dir: &Path, index: usize, extra_args: &[String]) -> anyhow::Result<Self> {
        let mut command = Command::new(node_bin()?);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            // The bench is one client address sending as fast as it is asked to.
            .args(["--rate-limits", "off"])
            .arg("--data-dir")
            .arg(dir)
            .args(extra_args)
            // Only the startup line (with the bound address) and problems.
            .env("RUST_LOG", "warn,chatnode::startup=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // The bench's own environment (or .env) must not point the node elsewhere.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CHATNODE_") {
                command.env_remove(name);
            }
        }
        let mut child = command.spawn().context("cannot start chatnode serve")?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the node exited at once"))? as i32;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    if event["message"] == "chatnode listening" {
                        if let Some(address) = event["address"].as_str() {
                            return Ok(address.to_string());
                        }
                    }
                }
            }
            bail!("the node exited before listening")
        })
        .await
        .context("the node did not start listening in time")??;
        // Keep draining its log so that it never blocks on a full pipe.
        let log_path = dir.join(format!("node-{index}.log"));
        tokio::spawn(async move {
            let Ok(mut log) = tokio::fs::File::create(log_path).await else {
                return;
            };
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log.write_all(line.as_bytes()).await;
                let _ = log.write_all(b"\n").await;
            }
        });
        let node = Self {
            child,
            url: format!("http://{address}"),
            pid,
        };
        node.wait_ready().await?;
        Ok(node)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            let ready = client
                .get(format!("{}/readyz", self.url))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the node at {} never became ready", self.url)
    }

    /// SIGTERM, a bounded wait for the graceful exit, then SIGKILL.
    async fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill has no memory preconditions; `pid` is our own child, not yet reaped.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
        match timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.map(|_| ()).context("waiting for the node"),
            Err(_) => {
                self.child.kill().await?;
                Err(anyhow!(
                    "the node did not stop within {STOP_TIMEOUT:?}; killed"
                ))
            }
        }
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
