//! Prometheus metrics: served only on `--metrics-listen`, in the text format, and scraped by
//! a real Prometheus (Debian's `prometheus`, started here on a free loopback port).

use std::time::Duration;

use chatnode::config::TransportKind;
use chatnode_client::{Client, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn, spawn_with, TestNode, WAIT};

async fn node_with_metrics() -> TestNode {
    spawn_with(|config| config.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await
}

#[tokio::test]
async fn metrics_are_served_only_on_their_own_address() {
    let plain = spawn().await;
    assert!(plain.metrics.is_none());
    let (status, _) = plain.get("/metrics", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "never on the public listener"
    );

    let node = node_with_metrics().await;
    let (status, _) = node.get("/metrics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "counted", &[]).await;
    let mut socket = node.ws(room, &alice).await;
    node.send_message(&alice, room, "one").await;
    assert_eq!(socket.next_data().await["message"], "one");
    let answer = node
        .metrics
        .as_ref()
        .unwrap()
        .get("/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let content_type = answer.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = answer.text();
    assert!(
        text.contains("chatnode_messages_stored_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("chatnode_websocket_connections 1\n"),
        "{text}"
    );
    let sends =
        "chatnode_http_requests_total{route=\"/api/v1/chat/chatrooms/{id}/messages/send/\",\
                 method=\"POST\",status=\"201\"} 1\n";
    assert!(text.contains(sends), "{text}");
    assert!(
        !text.contains(&format!("/{room}/")),
        "no id is a label: {text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    for line in [
        "chatnode_transport_up 1\n",
        "chatnode_relay_lease_held 1\n",
        "chatnode_delivery_latency_seconds_count 1\n",
        // Read from the database at the scrape (its delete may still be on its way).
        "chatnode_outbox_events ",
        "chatnode_outbox_oldest_age_seconds ",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    let frames = text
        .lines()
        .find_map(|l| l.strip_prefix("chatnode_frames_delivered_total "))
        .and_then(|v| v.parse::<u64>().ok());
    // The positions frame and the message at least.
    assert!(frames.is_some_and(|n| n >= 2), "{text}");

    // A socket the client closes is counted as closed by its peer.
    socket.socket.close().await.unwrap();
    let metrics = node.metrics.as_ref().unwrap();
    eventually(crate::helpers::WAIT, "the close is counted", || async {
        let text = metrics.get("/metrics").send().await.ok()?.text();
        text.contains("chatnode_websocket_closes_total{code=\"peer\"} 1\n")
            .then_some(())
    })
    .await;
}

/// The node's exposition now.
async fn scrape(node: &TestNode) -> String {
    let metrics = node
        .metrics
        .as_ref()
        .expect("started with --metrics-listen");
    let answer = metrics
        .get("/metrics")
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(answer.status, StatusCode::OK);
    answer.text()
}

/// The value of the sample named exactly `series` (with its labels), if exported.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn refusals_shed_requests_store_operations_and_socket_writes_are_counted() {
    let node = spawn_with(|config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        config.limits.enabled = true;
        config.limits.send = "1/h".parse().unwrap();
        config.max_connections = 1;
    })
    .await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "refused", &[]).await;
    let mut socket = node.ws(room, &alice).await;
    node.send_message(&alice, room, "one").await;
    let send = format!("/api/v1/chat/chatrooms/{room}/messages/send/");
    let (status, _) = node
        .post(&send, Some(&alice.access), json!({"content": "two"}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = node.refused_ws(&node.ws_url(room, &alice.access)).await;
    assert_eq!(status, 503, "the one socket allowed is open");
    assert_eq!(socket.next_data().await["message"], "one");

    let text = scrape(&node).await;
    let exact = [
        ("chatnode_rate_limit_refusals_total{limit=\"send\"}", 1.0),
        (
            "chatnode_rate_limit_refusals_total{limit=\"login_ip\"}",
            0.0,
        ),
        ("chatnode_load_shed_total{cause=\"sockets\"}", 1.0),
        ("chatnode_load_shed_total{cause=\"inflight\"}", 0.0),
        ("chatnode_load_shed_total{cause=\"write_queue\"}", 0.0),
        ("chatnode_load_shed_total{cause=\"hash_queue\"}", 0.0),
        (
            "chatnode_store_operation_duration_seconds_count{op=\"store_message\"}",
            1.0,
        ),
        (
            "chatnode_store_operation_duration_seconds_count{op=\"register\"}",
            1.0,
        ),
        ("chatnode_store_queue_depth", 0.0),
        // The memory transport has no broker: nothing to reconnect to or confirm.
        ("chatnode_transport_reconnects_total", 0.0),
        ("chatnode_publish_confirm_duration_seconds_count", 0.0),
    ];
    for (series, value) in exact {
        assert_eq!(sample(&text, series), Some(value), "{series}:\n{text}");
    }
    let at_least = [
        // Every authenticated request reads its token's user.
        (
            "chatnode_store_operation_duration_seconds_count{op=\"auth_lookup\"}",
            3.0,
        ),
        // Stored and deleted once published, on the relay's side.
        (
            "chatnode_store_operation_duration_seconds_count{op=\"outbox_fetch\"}",
            1.0,
        ),
        // The positions frame and the message.
        ("chatnode_websocket_write_duration_seconds_count", 2.0),
    ];
    for (series, least) in at_least {
        let value = sample(&text, series);
        assert!(
            value.is_some_and(|v| v >= least),
            "{series} >= {least}:\n{text}"
        );
    }
}

/// A node of `transport` on each broker: its publishes are confirmed and timed, and closing
/// its broker connections counts a reconnect once it is back.
async fn confirms_and_reconnects(transport: TransportKind) {
    for broker in crate::broker::brokers().await {
        let exchange = format!("chatnode-it-{}", uuid::Uuid::new_v4().simple());
        let node_id = format!("metrics-{}", uuid::Uuid::new_v4().simple());
        let node = spawn_with(|config| {
            config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
            config.transport = transport;
            config.broker_url = Some(broker.url.clone());
            config.exchange = exchange.clone();
            config.node_id = node_id.clone();
        })
        .await;
        let label = format!("{transport:?} on {}", broker.label);
        let alice = node.register("alice").await;
        let room = node.create_room(&alice, "confirmed", &[]).await;
        node.send_message(&alice, room, "one").await;
        let confirms = "chatnode_publish_confirm_duration_seconds_count";
        let published = |least: f64| {
            let node = &node;
            move || async move { (sample(&scrape(node).await, confirms)? >= least).then_some(()) }
        };
        eventually(
            WAIT,
            &format!("{label}: a confirm is timed"),
            published(1.0),
        )
        .await;
        let before = sample(&scrape(&node).await, confirms).unwrap();
        let text = scrape(&node).await;
        assert_eq!(
            sample(&text, "chatnode_transport_reconnects_total"),
            Some(0.0),
            "{label}"
        );

        let closed = broker
            .close_connections_of(std::slice::from_ref(&node_id))
            .await;
        assert!(closed >= 1, "{label}: the node had a broker connection");
        node.send_message(&alice, room, "two").await;
        let reconnected = || async {
            let text = scrape(&node).await;
            (sample(&text, "chatnode_transport_reconnects_total")? >= 1.0).then_some(())
        };
        eventually(
            Duration::from_secs(30),
            &format!("{label}: a reconnect"),
            reconnected,
        )
        .await;
        let what = format!("{label}: the send after the reconnect is confirmed");
        eventually(Duration::from_secs(30), &what, published(before + 1.0)).await;
        drop(node);
        broker.delete_exchange(&exchange).await;
    }
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp091_publish_confirms_and_reconnects_are_counted() {
    confirms_and_reconnects(TransportKind::Amqp091).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp10_publish_settlements_and_reconnects_are_counted() {
    confirms_and_reconnects(TransportKind::Amqp10).await;
}

/// Every PromQL expression of the Grafana dashboard shipped in `docs/`.
fn dashboard_queries() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    let targets = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default());
    targets
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_grafana_dashboard_uses_only_metrics_the_node_exports() {
    // Rate limits on (at their defaults), so each limit's refusal count is exported.
    let node = spawn_with(|config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        config.limits.enabled = true;
    })
    .await;
    // A family shows once it has a sample: a send seen on a socket the client then closes.
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "dashboard", &[]).await;
    let mut socket = node.ws(room, &alice).await;
    node.send_message(&alice, room, "one").await;
    assert_eq!(socket.next_data().await["message"], "one");
    socket.socket.close().await.unwrap();
    let metrics = node.metrics.as_ref().unwrap();
    let text = eventually(crate::helpers::WAIT, "the close is counted", || async {
        let text = metrics.get("/metrics").send().await.ok()?.text();
        text.contains("chatnode_websocket_closes_total")
            .then_some(text)
    })
    .await;
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    for query in &queries {
        let names = query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("chatnode_"));
        for name in names {
            // The family a sample name belongs to, as the exposition's TYPE line names it.
            let family = ["_bucket", "_count", "_sum", "_total", "_info"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            let declared = format!("# TYPE {family} ");
            assert!(
                text.contains(&declared),
                "{query}: {name} is not exported:\n{text}"
            );
        }
    }
}

/// A Prometheus scraping `target` every second, on a free loopback port; killed on drop.
struct Prometheus {
    api: Client,
    _process: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: chatnode\n    \
             static_configs:\n      - targets: ['{target}']\n"
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("Debian's prometheus is installed");
        let api = Client::new(format!("http://127.0.0.1:{port}"));
        let prometheus = Self {
            api,
            _process: process,
            _dir: dir,
        };
        eventually(Duration::from_secs(30), "Prometheus is ready", || async {
            let ready = prometheus.api.get("/-/ready").send().await.ok()?;
            (ready.status == StatusCode::OK).then_some(())
        })
        .await;
        prometheus
    }

    /// The value of the first sample `promql` gives now, if any.
    async fn value(&self, promql: &str) -> Option<f64> {
        let answer = self
            .api
            .get("/api/v1/query")
            .query(&[("query", promql)])
            .send()
            .await
            .ok()?;
        let body: Value = answer.json();
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

#[tokio::test]
#[ignore = "needs Prometheus: install Debian's prometheus"]
async fn prometheus_scrapes_the_node_and_sees_a_burst_of_sends() {
    let node = node_with_metrics().await;
    let target = node.metrics.as_ref().unwrap().base_url().to_string();
    let target = target.trim_start_matches("http://").trim_end_matches('/');
    let prometheus = Prometheus::start(target).await;
    let within = Duration::from_secs(60);
    // Scraped before the burst, so the increase is between two samples of it.
    eventually(within, "Prometheus scrapes the node", || async {
        (prometheus.value("up{job=\"chatnode\"}").await? == 1.0).then_some(())
    })
    .await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "scraped", &[]).await;
    for n in 0..5 {
        node.send_message(&alice, room, &format!("burst {n}")).await;
    }
    let increase = eventually(within, "the sends show in a PromQL query", || async {
        let increase = prometheus
            .value("increase(chatnode_messages_stored_total[1m])")
            .await?;
        (increase > 0.0).then_some(increase)
    })
    .await;
    assert!(increase >= 1.0, "{increase}");
    let latencies = eventually(within, "the latency histogram has samples", || async {
        let count = prometheus
            .value("sum(chatnode_http_request_duration_seconds_count)")
            .await?;
        (count > 0.0).then_some(count)
    })
    .await;
    assert!(
        latencies >= 7.0,
        "register, create and five sends at least: {latencies}"
    );
    // Every panel of the shipped dashboard is a query Prometheus accepts.
    for query in dashboard_queries() {
        let answer = prometheus
            .api
            .get("/api/v1/query")
            .query(&[("query", query.as_str())])
            .send()
            .await
            .unwrap();
        let body: Value = answer.json();
        assert_eq!(body["status"], "success", "{query}: {body}");
    }
}
