//! [`NodeProcess`]: `chatnode serve` as a child process on a free loopback port, for tests,
//! benches and bots that want a real node: start it, wait until it is ready, SIGTERM or
//! SIGKILL it, and start it again with the same arguments (so on the same data directory).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use crate::{Client, Error};

/// Bound on a start: the listening line, then `/readyz` answering 200.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines a [`NodeProcess`] keeps (the newest); older ones are dropped.
pub const LOG_LINES_KEPT: usize = 20_000;
/// Log lines an [`Error::NotStarted`] quotes (the newest).
const NOT_STARTED_LINES: usize = 200;

/// How to start a node: `serve --listen 127.0.0.1:0 --log-format json` plus your arguments.
/// Only the environment given here reaches the node: inherited `CHATNODE_*` variables are
/// removed, so a developer's `.env` cannot point a test node elsewhere.
#[derive(Debug, Clone)]
pub struct Launch {
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    log_file: Option<PathBuf>,
    echo: bool,
    keep_pipes: bool,
    log_lines: usize,
}

impl Launch {
    /// `bin` is the `chatnode` executable (in a cargo test, `env!("CARGO_BIN_EXE_chatnode")`).
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            args: Vec::new(),
            env: vec![("RUST_LOG".into(), "warn,chatnode::startup=info".into())],
            log_file: None,
            echo: false,
            keep_pipes: true,
            log_lines: LOG_LINES_KEPT,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable of the node (`RUST_LOG` defaults to warnings plus the
    /// listening line, which the launcher needs).
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        let name = name.into();
        self.env.retain(|(existing, _)| *existing != name);
        self.env.push((name, value.into()));
        self
    }

    /// Appends every log line of the node to `path` too.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    /// Prints every log line to this process's stderr (a test shows them when it fails).
    pub fn echo_log(mut self) -> Self {
        self.echo = true;
        self
    }

    /// Keeps the newest `lines` log lines instead of [`LOG_LINES_KEPT`].
    pub fn keep_log_lines(mut self, lines: usize) -> Self {
        self.log_lines = lines.max(1);
        self
    }

    /// Closes the node's stdout and stderr once it listens, as a supervisor that went away
    /// would: the node must keep serving.
    pub fn close_pipes_after_start(mut self) -> Self {
        self.keep_pipes = false;
        self
    }

    /// Starts the node and waits until it is ready.
    pub async fn start(&self) -> Result<NodeProcess, Error> {
        let mut command = Command::new(&self.bin);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CHATNODE_") {
                command.env_remove(name);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().map_err(|source| Error::Process {
            what: format!("cannot start {}", self.bin.display()),
            source,
        })?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (found, listening) = oneshot::channel();
        let sink = LogSink::open(self, log.clone()).await?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut readers = vec![tokio::spawn(read_log(
            stdout,
            sink.clone(),
            Some(found),
            self.keep_pipes,
        ))];
        if self.keep_pipes {
            readers.push(tokio::spawn(read_log(stderr, sink, None, true)));
        } else {
            drop(stderr);
        }
        let started = timeout(START_TIMEOUT, listening).await;
        let (address, node_id) = match started {
            Ok(Ok(found)) => found,
            Ok(Err(_)) => {
                let status = timeout(Duration::from_secs(5), child.wait()).await;
                // Its last words (why it stopped) may still be in the other pipe.
                for reader in readers {
                    let _ = timeout(Duration::from_secs(5), reader).await;
                }
                let status = match status {
                    Ok(Ok(status)) => status.to_string(),
                    _ => "no exit status".to_string(),
                };
                return Err(not_started(
                    format!("it exited ({status}) before listening"),
                    &log,
                ));
            }
            Err(_) => return Err(not_started("it never logged its address".into(), &log)),
        };
        let pid = child.id().unwrap_or_default();
        let node = NodeProcess {
            launch: self.clone(),
            client: Client::new(format!("http://{address}")),
            child,
            pid,
            address,
            node_id,
            log,
            readers,
        };
        node.wait_ready().await?;
        Ok(node)
    }
}

/// A running `chatnode serve`; SIGKILLed when dropped.
pub struct NodeProcess {
    launch: Launch,
    child: Child,
    pid: u32,
    address: SocketAddr,
    node_id: String,
    client: Client,
    log: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl NodeProcess {
    /// The node's API.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn url(&self) -> &str {
        self.client.base_url()
    }

    /// The id the node logged when it started listening.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The node's log lines so far (the newest [`LOG_LINES_KEPT`]); after [`Self::kill`] or
    /// [`Self::terminate`], every line it wrote.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").iter().cloned().collect()
    }

    /// SIGKILL: none of the node's shutdown code runs.
    pub async fn kill(&mut self) -> Result<(), Error> {
        let failed = |source| Error::Process {
            what: "SIGKILL".to_string(),
            source,
        };
        self.child.start_kill().map_err(failed)?;
        self.child.wait().await.map_err(failed)?;
        self.drain_log().await;
        Ok(())
    }

    /// Waits (boundedly) for the log readers to reach the end of the exited node's pipes.
    async fn drain_log(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = timeout(Duration::from_secs(5), reader).await;
        }
    }

    /// SIGTERM, then a wait of at most `within` for the graceful exit (SIGKILL after it).
    pub async fn terminate(&mut self, within: Duration) -> Result<ExitStatus, Error> {
        // SAFETY: kill(2) has no memory preconditions; `pid` is our child, not yet reaped.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        match timeout(within, self.child.wait()).await {
            Ok(status) => {
                self.drain_log().await;
                status.map_err(|source| Error::Process {
                    what: "waiting for the node".to_string(),
                    source,
                })
            }
            Err(_) => {
                self.kill().await?;
                Err(Error::Timeout(format!(
                    "the node did not stop within {within:?} of SIGTERM; killed"
                )))
            }
        }
    }

    /// Starts the node again with the same arguments (killing it first if it runs): the
    /// same data directory, a new port.
    pub async fn restart(&mut self) -> Result<(), Error> {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill().await?;
        }
        *self = self.launch.start().await?;
        Ok(())
    }

    async fn wait_ready(&self) -> Result<(), Error> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(readiness) = self.client.readyz().await {
                if readiness.ready {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(not_started(
            format!("it listens at {} but never became ready", self.address),
            &self.log,
        ))
    }
}

fn not_started(reason: String, log: &Mutex<VecDeque<String>>) -> Error {
    let log = log.lock().expect("log lock");
    let tail: Vec<&str> = log
        .iter()
        .rev()
        .take(NOT_STARTED_LINES)
        .rev()
        .map(String::as_str)
        .collect();
    Error::NotStarted {
        reason,
        log: tail.join("\n"),
    }
}

/// Where log lines go: the bounded tail, and optionally a file and stderr.
#[derive(Clone)]
struct LogSink {
    tail: Arc<Mutex<VecDeque<String>>>,
    capacity: usize,
    file: Option<Arc<tokio::sync::Mutex<tokio::fs::File>>>,
    echo: bool,
}

impl LogSink {
    async fn open(launch: &Launch, tail: Arc<Mutex<VecDeque<String>>>) -> Result<Self, Error> {
        let file = match &launch.log_file {
            None => None,
            Some(path) => {
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|source| Error::Process {
                        what: format!("cannot open {}", path.display()),
                        source,
                    })?;
                Some(Arc::new(tokio::sync::Mutex::new(file)))
            }
        };
        Ok(Self {
            tail,
            capacity: launch.log_lines,
            file,
            echo: launch.echo,
        })
    }

    async fn write(&self, line: String) {
        if self.echo {
            eprintln!("node: {line}");
        }
        if let Some(file) = &self.file {
            let mut file = file.lock().await;
            let _ = file.write_all(line.as_bytes()).await;
            let _ = file.write_all(b"\n").await;
        }
        let mut tail = self.tail.lock().expect("log lock");
        if tail.len() >= self.capacity {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

type Listening = oneshot::Sender<(SocketAddr, String)>;

/// Reads one of the node's pipes line by line until it ends, so the node never blocks on a
/// full pipe; the stdout reader reports the listening line.
async fn read_log(
    pipe: impl AsyncRead + Unpin,
    sink: LogSink,
    mut found: Option<Listening>,
    keep_pipe: bool,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let listening = found.is_some().then(|| listening_line(&line)).flatten();
        sink.write(line).await;
        if let Some(listening) = listening {
            if let Some(found) = found.take() {
                let _ = found.send(listening);
            }
            if !keep_pipe {
                return;
            }
        }
    }
}

fn listening_line(line: &str) -> Option<(SocketAddr, String)> {
    let event: Value = serde_json::from_str(line).ok()?;
    if event["message"] != "chatnode listening" {
        return None;
    }
    let address = event["address"].as_str()?.parse().ok()?;
    let node = event["node"].as_str().unwrap_or_default().to_string();
    Some((address, node))
}
