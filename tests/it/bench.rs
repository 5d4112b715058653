//! `chatnode bench` through its library API against a real node: a tiny load must reach every
//! receiver exactly once, over REST and over WebSocket, and a short soak (joins, leaves,
//! reconnects with `since`) must owe nothing at its end. And the binary's `--spawn` with two
//! nodes on the broker, as BENCHMARKS.md runs it.

use std::time::Duration;

use chatnode_bench::api::Target;
use chatnode_bench::chat_list::{self, ChatListOptions};
use chatnode_bench::load::{self, LoadOptions, SendOver};
use chatnode_bench::presence::{self, PresenceOptions};
use chatnode_bench::soak::{self, SoakOptions};

use crate::broker::brokers;
use crate::helpers::spawn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_bench_delivers_every_message_exactly_once_over_rest_and_ws() {
    let node = spawn().await;
    let target = Target::resolve(node.api.base_url(), false).await.unwrap();
    for (send_over, rate) in [(SendOver::Rest, None), (SendOver::Ws, Some(500.0))] {
        let mut options = LoadOptions::new(vec![target.clone()]);
        options.rooms = 2;
        options.receivers = 3;
        options.senders = 2;
        options.messages = 50;
        options.send_over = send_over;
        options.rate = rate;
        // The WebSocket run's receivers also mark read, every 5 messages.
        options.mark_read_every = (send_over == SendOver::Ws).then_some(5);
        options.drain = Duration::from_secs(10);
        options.server_pids = vec![std::process::id() as i32];
        let report = tokio::time::timeout(Duration::from_secs(60), load::run(&options))
            .await
            .expect("the bench finishes in time")
            .expect("the bench runs");
        let c = &report.completeness;
        assert!(report.complete, "{send_over:?}: {report:#?}");
        assert_eq!(
            (c.expected, c.delivered, c.missing, c.duplicates),
            (150, 150, 0, 0)
        );
        assert_eq!(c.ratio, 1.0);
        assert_eq!((report.sent, report.accepted, report.errors), (50, 50, 0));
        assert_eq!(report.latency_ms.samples, 150);
        assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.p50 <= report.latency_ms.max);
        assert_eq!(report.receiver_sockets, 6);
        let sender_sockets = if send_over == SendOver::Ws { 2 } else { 0 };
        assert_eq!(report.sender_sockets, sender_sockets);
        // Receipt frames are counted, never as deliveries: every socket's first frame gives
        // the room's positions (the delivered and read frames that follow are coalesced over
        // ~200 ms, which a run this short may end before).
        let receipts = &report.receipt_frames_by_event;
        assert_eq!(receipts.positions, 6 + sender_sockets as u64, "{report:#?}");
        assert_eq!(report.refused_frames, 0, "{report:#?}");
        // 25 messages per room, a mark every 5, 6 receivers.
        let reads = if send_over == SendOver::Ws { 30 } else { 0 };
        assert_eq!(report.reads_sent, reads, "{report:#?}");
        assert_eq!(report.servers.len(), 1);
        // Every socket of the run is closed again.
        node.wait_for_sockets(0).await;
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_with_churn_loses_nothing_and_samples_memory() {
    let node = spawn().await;
    let target = Target::resolve(node.api.base_url(), false).await.unwrap();
    let mut options = SoakOptions::new(vec![target], Duration::from_secs(4));
    options.users = 6;
    options.rooms = 3;
    options.rate = 60.0;
    // Much churn, so that every action happens in a few seconds.
    options.mix = "rest=25,ws=25,join=15,leave=15,reconnect=10,read=10"
        .parse()
        .unwrap();
    options.seed = 6;
    options.sample_every = Duration::from_millis(250);
    options.server_pids = vec![std::process::id() as i32];
    let report = tokio::time::timeout(Duration::from_secs(90), soak::run(&options))
        .await
        .expect("the soak finishes in time")
        .expect("the soak runs");

    assert!(report.complete, "{report:#?}");
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert!(report.errors_by_kind.is_empty());
    let c = &report.completeness;
    assert!(c.expected > 0 && report.messages > 0, "{c:?}");
    assert_eq!((c.delivered, c.missing, c.duplicates), (c.expected, 0, 0));
    assert_eq!(
        (c.reordered, c.unacknowledged, c.foreign, c.malformed),
        (0, 0, 0, 0)
    );
    assert_eq!(c.ratio, 1.0);
    assert!(report.deliveries >= c.delivered);
    let a = &report.actions;
    assert!(
        a.rest_sends > 0
            && a.ws_sends > 0
            && a.joins > 0
            && a.leaves > 0
            && a.reconnects > 0
            && a.reads > 0,
        "{a:?}"
    );
    // Every socket opened got the positions frame first; reads reach members' sockets.
    let receipts = &report.receipt_frames_by_event;
    assert!(receipts.positions > 0 && receipts.read > 0, "{receipts:?}");
    assert_eq!(report.receipt_frames, receipts.total());
    assert_eq!(report.messages, c.messages);
    assert!(report.messages <= a.rest_sends + a.ws_sends);

    let memory = &report.memory;
    assert!(memory.samples.len() >= 6, "{}", memory.samples.len());
    assert!(memory.samples.iter().all(|s| s.servers_rss_kib[0] > 0));
    let trend = memory.servers[0].trend.as_ref().expect("enough samples");
    assert!(trend.start_kib > 0 && trend.max_kib >= trend.end_kib);
    assert!(memory.flat.is_some());
    assert_eq!(report.servers.len(), 1);
    // Every socket of the soak is closed again.
    node.wait_for_sockets(0).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_list_bench_walks_every_room_once_per_pass_in_pages() {
    let node = spawn().await;
    let target = Target::resolve(node.api.base_url(), false).await.unwrap();
    let options = ChatListOptions {
        targets: vec![target],
        rooms: 120,
        page: 50,
        passes: 2,
        server_pids: vec![std::process::id() as i32],
        progress: false,
    };
    let report = tokio::time::timeout(Duration::from_secs(120), chat_list::run(&options))
        .await
        .expect("the bench finishes in time")
        .expect("the bench runs");
    // 120 rooms at 50 a page: 3 pages a walk, the last one short and without `next`.
    assert_eq!((report.rooms, report.pages), (120, 6), "{report:#?}");
    assert_eq!(report.page_latency.samples, 6);
    assert!(report.page_latency.p50 > 0.0 && report.page_latency.p50 <= report.page_latency.max);
    // A client sending no limit gets the default page of 50, never the whole list.
    assert!(report.default_page_bytes > 0 && report.default_page_bytes <= report.page_bytes_max);
    assert_eq!(report.servers.len(), 1);
    node.stop().await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn a_spawned_two_node_bench_over_the_broker_delivers_everything() {
    for broker in brokers().await {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatnode"))
            .args(["bench", "--spawn", "--nodes", "2", "--json"])
            .args(["--node-arg=--transport=amqp091".to_string()])
            .arg(format!("--node-arg=--broker-url={}", broker.url))
            .args(["--rooms", "2", "--receivers", "3", "--senders", "2"])
            .args(["--messages", "40", "--drain-secs", "20"])
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(120), output)
            .await
            .expect("the bench finishes in time")
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}: {stdout}\n{}",
            broker.label,
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(report["targets"].as_array().unwrap().len(), 2, "{report}");
        assert_eq!(report["servers"].as_array().unwrap().len(), 2, "{report}");
        assert_eq!(report["complete"], true, "{report}");
        // Sockets and senders are spread over both nodes, so most deliveries cross the broker.
        assert_eq!(report["completeness"]["delivered"], 120, "{report}");
        assert_eq!(report["errors"], 0, "{report}");
    }
}

#[tokio::test]
async fn chatnode_bench_without_the_bench_binary_says_how_to_build_it() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatnode"))
        .args(["bench", "--help"])
        .env("CHATNODE_BENCH_BIN", "/nonexistent/chatnode-bench")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("chatnode answers in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cargo build --release -p chatnode-bench"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_presence_churn_reports_frames_latency_and_one_frame_per_watching_socket() {
    let node = spawn().await;
    let target = Target::resolve(node.api.base_url(), false).await.unwrap();
    let options = PresenceOptions {
        targets: vec![target],
        users: 20,
        churn: 5,
        rate: 20.0,
        phase: Duration::from_secs(1),
        wide_rooms: 12,
        progress: false,
    };
    let report = tokio::time::timeout(Duration::from_secs(120), presence::run(&options))
        .await
        .expect("the bench finishes in time")
        .expect("the bench runs");
    assert_eq!(report.send_errors, 0, "{report:#?}");
    for phase in [&report.steady, &report.churned] {
        assert_eq!(phase.messages_sent, 20, "{report:#?}");
        assert!(phase.deliveries > 0 && phase.latency_ms.samples == phase.deliveries);
        assert!(phase.latency_ms.p99 > 0.0);
    }
    // Each of the 5 arrivals is announced to the room's sockets; nobody arrives while steady.
    assert_eq!(report.steady.presence_frames, 0, "{report:#?}");
    assert!(report.churned.presence_frames >= 5 * 15, "{report:#?}");
    assert!(report.churned.presence_frames_per_sec > 0.0);
    assert_eq!(
        report.wide.online_frames_per_socket,
        vec![1; 10],
        "{report:#?}"
    );
    assert_eq!(report.wide.flap_frames, 0);
    assert!(report.wide.exact);
    let table = presence::table(&report);
    assert!(table.contains("presence frames/s") && table.contains("latency p99 ms"));
    node.stop().await;
}
