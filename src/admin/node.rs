//! `chatnode admin node drain --pid <pid>`: for rolling upgrades. The command sends the node
//! SIGUSR1; the node closes its sockets with 1012 "service restart" (clients reconnect,
//! to another node), refuses new ones with 503 and fails `/readyz`, keeps serving REST for
//! its `--drain-grace`, then shuts down as on SIGTERM (a second drain ends the grace). The
//! command returns once the process has exited, or fails after `--timeout`.
//!
//! A signal, not an HTTP call: it needs no listener (nothing to protect on the network),
//! and the permission to signal the process is the permission to stop it. In a container,
//! run it there (`docker exec <node> chatnode admin node drain --pid 1`).

use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::json;

use super::output::{fields, Report};

/// The signal a node drains on.
#[cfg(unix)]
pub const DRAIN_SIGNAL: libc::c_int = libc::SIGUSR1;
/// How often the command looks whether the node has exited.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Close the node's sockets with 1012 so clients reconnect elsewhere, then stop it after
    /// its `--drain-grace` (a second drain stops it at once).
    Drain {
        /// The node's process id.
        #[arg(long)]
        pid: i32,
        /// Fail if the node has not exited after this many seconds.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("no process with id {0}")]
    NoProcess(i32),
    #[error("process {pid} is {name:?}, not a chatnode node: nothing was sent")]
    NotANode { pid: i32, name: String },
    #[error("cannot signal process {pid}: {source}")]
    Signal { pid: i32, source: std::io::Error },
    #[error("node {pid} was told to drain but is still running after {secs} s")]
    StillRunning { pid: i32, secs: u64 },
    #[cfg(not(unix))]
    #[error("draining a node by signal needs a Unix system")]
    Unsupported,
}

pub async fn run(command: NodeCommand) -> Result<Report, NodeError> {
    let NodeCommand::Drain { pid, timeout } = command;
    let started = Instant::now();
    drain(pid, Duration::from_secs(timeout)).await?;
    let took = started.elapsed().as_secs_f64();
    Ok(Report {
        json: json!({ "pid": pid, "drained": true, "seconds": took }),
        text: fields(&[
            ("pid", pid.to_string()),
            ("drained", format!("exited after {took:.1} s")),
        ]),
    })
}

#[cfg(unix)]
async fn drain(pid: i32, timeout: Duration) -> Result<(), NodeError> {
    if pid <= 0 {
        // 0 and negative ids name process groups to kill(2).
        return Err(NodeError::NoProcess(pid));
    }
    check_is_node(pid)?;
    // SAFETY: kill(2) has no memory preconditions.
    if unsafe { libc::kill(pid, DRAIN_SIGNAL) } != 0 {
        let source = std::io::Error::last_os_error();
        return Err(match source.raw_os_error() {
            Some(libc::ESRCH) => NodeError::NoProcess(pid),
            _ => NodeError::Signal { pid, source },
        });
    }
    let deadline = Instant::now() + timeout;
    while !exited(pid) {
        if Instant::now() >= deadline {
            return Err(NodeError::StillRunning {
                pid,
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

#[cfg(not(unix))]
async fn drain(_pid: i32, _timeout: Duration) -> Result<(), NodeError> {
    Err(NodeError::Unsupported)
}

/// SIGUSR1 ends a process that does not handle it: only a chatnode gets it. Linux names the
/// process in /proc; elsewhere there is nothing to read and the pid is trusted.
#[cfg(unix)]
fn check_is_node(pid: i32) -> Result<(), NodeError> {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(name) if name.trim_end().starts_with("chatnode") => Ok(()),
        Ok(name) => Err(NodeError::NotANode {
            pid,
            name: name.trim_end().to_string(),
        }),
        Err(_) if cfg!(target_os = "linux") => Err(NodeError::NoProcess(pid)),
        Err(_) => Ok(()),
    }
}

/// Gone, or a zombie its parent has not reaped yet (it has exited all the same).
#[cfg(unix)]
fn exited(pid: i32) -> bool {
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) state ...`: the name may hold spaces and parentheses, the state
        // follows the last `)`.
        return stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']));
    }
    // SAFETY: signal 0 checks only that the process exists.
    let gone = unsafe { libc::kill(pid, 0) } != 0;
    gone && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}
