//! The brokers under test: their URLs, a fresh exchange per test, and rabbitmqctl to cut
//! connections.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use lapin::options::ExchangeDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use tokio::time::timeout;

use super::support::WAIT;

/// The broker URL in `var`. Broker tests are `#[ignore]`d and run only when selected
/// (`make test` does when the variable is set): selected without it, they fail.
pub fn broker_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("this broker test needs {var}"))
}

/// Runs `test(url, exchange)` against a fresh exchange and deletes the exchange afterwards,
/// even on panic.
pub async fn with_exchange<F, Fut>(url: String, test: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let exchange = format!("chatnode-test-{}", uuid::Uuid::new_v4().simple());
    let outcome = AssertUnwindSafe(test(url.clone(), exchange.clone()))
        .catch_unwind()
        .await;
    let connection = timeout(
        WAIT,
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .expect("connect for cleanup in time")
    .expect("connect for cleanup");
    let channel = connection.create_channel().await.expect("cleanup channel");
    channel
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete the test exchange");
    let _ = connection.close(200, "OK".into()).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// rabbitmqctl for the broker behind a test URL: inside the Docker container that publishes
/// the URL's port when there is one, else the local installation.
pub struct Rabbitmqctl {
    command: Vec<String>,
}

impl Rabbitmqctl {
    pub async fn for_url(url: &str) -> Self {
        let filter = format!("publish={}", port(url));
        let listing = run(&["docker", "ps", "-q", "--filter", &filter]).await;
        let command = match listing
            .as_deref()
            .and_then(|ids| ids.split_whitespace().next())
        {
            Some(container) => vec!["docker", "exec", container, "rabbitmqctl"],
            None => vec!["rabbitmqctl"],
        };
        Self {
            command: command.into_iter().map(str::to_string).collect(),
        }
    }

    /// Runs rabbitmqctl; `None` when it is not available here.
    pub async fn run(&self, args: &[&str]) -> Option<String> {
        let mut all: Vec<&str> = self.command.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run(&all).await
    }

    /// The broker-side ids of the connections whose client properties carry `name`.
    pub async fn connections_named(&self, name: &str) -> Option<Vec<String>> {
        let listing = self
            .run(&["list_connections", "-q", "pid", "client_properties"])
            .await?;
        let name = format!("\"{name}\"");
        Some(
            listing
                .lines()
                .filter(|line| line.contains(&name))
                .filter_map(|line| line.split_whitespace().next())
                .map(str::to_string)
                .collect(),
        )
    }

    /// A node's connections: those whose client properties carry `name`, and the one
    /// consuming `queue`. RabbitMQ 3 shows its AMQP 1.0 connections neither with client
    /// properties nor as connections rabbitmqctl can close; they are found through their
    /// consumer's channel, which is named after the client's address.
    pub async fn connections_of(&self, name: &str, queue: &str) -> Option<Vec<BrokerConnection>> {
        let mut found: Vec<BrokerConnection> = self
            .connections_named(name)
            .await?
            .into_iter()
            .map(BrokerConnection::Listed)
            .collect();
        let consumers = self
            .run(&["list_consumers", "-q", "queue_name", "channel_pid"])
            .await?;
        let consuming: Vec<&str> = consumers
            .lines()
            .filter_map(
                |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    [name, channel] if name == queue => Some(channel),
                    _ => None,
                },
            )
            .collect();
        let listed = self.run(&["list_connections", "-q", "pid"]).await?;
        let channels = self
            .run(&["list_channels", "-q", "pid", "connection", "name"])
            .await?;
        for line in channels.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [channel, connection, client, ..] = fields[..] else {
                continue;
            };
            if !consuming.contains(&channel) {
                continue;
            }
            let connection = if listed.lines().any(|pid| pid.trim() == connection) {
                BrokerConnection::Listed(connection.to_string())
            } else {
                let port = client.rsplit(':').next().and_then(|p| p.parse().ok());
                BrokerConnection::Hidden(port.expect("channel named after the client address"))
            };
            if !found.contains(&connection) {
                found.push(connection);
            }
        }
        Some(found)
    }

    /// Ends the connection from the broker's side: rabbitmqctl closes it, or, for one
    /// rabbitmqctl cannot see, the broker's end of its TCP connection is aborted (the broker
    /// runs here then). `false` when neither works here.
    pub async fn cut(&self, broker_port: u16, connection: &BrokerConnection) -> bool {
        match connection {
            BrokerConnection::Listed(id) => self.run(&["close_connection", id, "test"]).await,
            BrokerConnection::Hidden(client_port) => {
                let filter = format!("( sport = :{broker_port} and dport = :{client_port} )");
                run(&["ss", "-K", "-t", "state", "established", &filter]).await
            }
        }
        .is_some()
    }
}

/// A client connection as the broker shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerConnection {
    /// rabbitmqctl's id for it.
    Listed(String),
    /// The client's port, for a connection rabbitmqctl does not list.
    Hidden(u16),
}

async fn run(command: &[&str]) -> Option<String> {
    let (program, args) = command.split_first()?;
    let run = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    match timeout(Duration::from_secs(60), run).await {
        Ok(Ok(output)) if output.status.success() => {
            Some(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(Ok(output)) => {
            eprintln!(
                "{command:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            None
        }
        Ok(Err(e)) => {
            eprintln!("{program} unavailable: {e}");
            None
        }
        Err(_) => {
            eprintln!("{command:?} timed out");
            None
        }
    }
}

/// The port a broker URL points at (rabbitmqctl's end of a connection).
pub fn port(url: &str) -> u16 {
    url.parse::<lapin::uri::AMQPUri>()
        .map(|uri| uri.authority.port)
        .unwrap_or(5672)
}
