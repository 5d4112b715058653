//! Real RabbitMQ brokers for the multi-node tests: the one at `CHATNODE_TEST_AMQP_URL`, and
//! a container started with testcontainers when `CHATNODE_TEST_RABBITMQ_IMAGE` names an
//! image (a Docker engine must answer then). The tests using them are `#[ignore]`d; selected
//! without a broker (or with an image that does not start), they fail.

use std::process::{Command, Stdio};
use std::time::Duration;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};
use tokio::sync::OnceCell;

#[derive(Debug, Clone)]
pub struct Broker {
    pub label: String,
    pub url: String,
    /// The container to run `rabbitmqctl` in; `None` for the broker on this host.
    container: Option<String>,
}

pub fn docker_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes the container once this test process has exited, whoever ends it.
pub fn reap_after_exit(container: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; docker rm -f {container} >/dev/null 2>&1",
        pid = std::process::id()
    );
    let _ = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

async fn start_container(image: String) -> Result<Broker, String> {
    let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
    let container = GenericImage::new(name, tag)
        .with_exposed_port(5672.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Server startup complete"))
        .with_label("chatnode-test", "1")
        .with_startup_timeout(Duration::from_secs(120))
        .start()
        .await
        .map_err(|e| format!("cannot start {image}: {e}"))?;
    let port = container
        .get_host_port_ipv4(5672)
        .await
        .map_err(|e| format!("no port for {image}: {e}"))?;
    let id = container.id().to_string();
    // Shared by every test of this process, so it outlives the runtime that started it:
    // removal is left to the reaper instead of the handle's drop.
    reap_after_exit(&id);
    std::mem::forget(container);
    Ok(Broker {
        label: image.clone(),
        // The container host may be a bridge address; its port is published on loopback too.
        url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        container: Some(id),
    })
}

/// Every broker configured for this run, the one on this host first; fails without any.
pub async fn brokers() -> Vec<Broker> {
    static CONTAINER: OnceCell<Option<Broker>> = OnceCell::const_new();
    let mut found = Vec::new();
    if let Ok(url) = std::env::var("CHATNODE_TEST_AMQP_URL") {
        found.push(Broker {
            label: "CHATNODE_TEST_AMQP_URL".into(),
            url,
            container: None,
        });
    }
    let container = CONTAINER
        .get_or_init(|| async {
            let image = std::env::var("CHATNODE_TEST_RABBITMQ_IMAGE").ok()?;
            assert!(
                docker_answers(),
                "CHATNODE_TEST_RABBITMQ_IMAGE is set but Docker does not answer"
            );
            Some(
                start_container(image)
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        })
        .await;
    found.extend(container.clone());
    assert!(
        !found.is_empty(),
        "this broker test needs CHATNODE_TEST_AMQP_URL or CHATNODE_TEST_RABBITMQ_IMAGE"
    );
    found
}

impl Broker {
    fn rabbitmqctl(&self, args: &[&str]) -> Result<String, String> {
        let output = match &self.container {
            Some(id) => Command::new("docker")
                .args(["exec", id, "rabbitmqctl"])
                .args(args)
                .output(),
            None => Command::new("rabbitmqctl").args(args).output(),
        }
        .map_err(|e| format!("rabbitmqctl: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// Closes the broker connections of the given nodes (named `chatnode <node id>`); returns
    /// how many were closed.
    pub async fn close_connections_of(&self, node_ids: &[String]) -> usize {
        let broker = self.clone();
        let names: Vec<String> = node_ids.iter().map(|id| format!("chatnode {id}")).collect();
        tokio::task::spawn_blocking(move || {
            let listing = broker
                .rabbitmqctl(&["list_connections", "-q", "pid", "client_properties"])
                .expect("list connections");
            let pids: Vec<String> = listing
                .lines()
                .filter(|line| {
                    names
                        .iter()
                        .any(|name| line.contains(&format!("\"{name}\"")))
                })
                .filter_map(|line| line.split_whitespace().next().map(str::to_string))
                .collect();
            for pid in &pids {
                broker
                    .rabbitmqctl(&["close_connection", pid, "test: broker connection lost"])
                    .expect("close a connection");
            }
            pids.len()
        })
        .await
        .unwrap()
    }

    /// Deletes a test exchange (its queues are the nodes' own and go with them).
    pub async fn delete_exchange(&self, exchange: &str) {
        let connect = lapin::Connection::connect(&self.url, lapin::ConnectionProperties::default());
        let connection = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .expect("broker answers in time")
            .expect("connect to delete the test exchange");
        let channel = connection.create_channel().await.expect("a channel");
        channel
            .exchange_delete(
                exchange.into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await
            .expect("delete the test exchange");
        let _ = connection.close(200, "done".into()).await;
    }
}
