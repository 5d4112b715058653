//! Health by convention: `/livez` (the process answers), `/readyz` (every dependency, with a
//! plain-text `?verbose` report) and `/healthz`, kept for compatibility.

use chatnode_client::StatusCode;
use serde_json::json;

use crate::helpers::spawn;

#[tokio::test]
async fn livez_and_healthz_answer_while_the_process_runs() {
    let node = spawn().await;
    for path in ["/livez", "/healthz"] {
        let (status, body) = node.get(path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            body,
            json!({"success": true, "data": {"status": "ok"}}),
            "{path}"
        );
    }
}

#[tokio::test]
async fn readyz_verbose_lists_every_check_for_people() {
    let node = spawn().await;
    let answer = node.api.get("/readyz?verbose").send().await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let content_type = answer.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = answer.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "[+]store ok (ok)",
            "[+]data_dir ok (ok)",
            "[+]transport ok (memory)",
            "[+]subscriber ok (running)",
            "[+]drain ok (serving)",
            "sockets: 0",
            "readyz check passed",
        ],
        "{text}"
    );
    // Without `verbose`, the JSON report as before.
    let (status, body) = node.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["transport"], "memory", "{body}");
}

#[cfg(feature = "amqp091")]
#[tokio::test]
async fn a_node_without_its_broker_is_alive_but_not_ready_and_says_why() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(data_dir.path());
    config.transport = chatnode::config::TransportKind::Amqp091;
    // Nothing listens on port 1.
    config.broker_url = Some("amqp://guest:guest@127.0.0.1:1/%2f".into());
    let app = chatnode::Application::build(config)
        .await
        .expect("starts without its broker");
    let client = chatnode_client::Client::new(format!("http://{}", app.address()));
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let text = crate::helpers::eventually(
        crate::helpers::WAIT,
        "the report names the broker",
        || async {
            let answer = client.get("/readyz?verbose").send().await.unwrap();
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
            let text = answer.text();
            text.contains("127.0.0.1:1").then_some(text)
        },
    )
    .await;
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("[-]")).collect();
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("[-]transport failed: ")),
        "{text}"
    );
    assert!(text.contains("[+]store ok"), "{text}");
    assert!(text.ends_with("readyz check failed\n"), "{text}");
    assert!(!text.contains("guest:guest"), "no password in {text}");
    // Alive all the same: a broker outage is no reason to restart the process.
    let alive = client.get("/livez").send().await.unwrap();
    assert_eq!(alive.status, StatusCode::OK);
    shutdown.cancel();
    tokio::time::timeout(crate::helpers::WAIT, server)
        .await
        .expect("stops in time")
        .unwrap();
}
