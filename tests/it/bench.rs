//! `chatnode bench` through its library API against a real node: a tiny load must reach every
//! receiver exactly once, over REST and over WebSocket.

use std::time::Duration;

use chatnode::bench::api::Target;
use chatnode::bench::load::{self, LoadOptions, SendOver};

use crate::helpers::spawn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_bench_delivers_every_message_exactly_once_over_rest_and_ws() {
    let node = spawn().await;
    let target = Target::resolve(&node.base, false).await.unwrap();
    for (send_over, rate) in [(SendOver::Rest, None), (SendOver::Ws, Some(500.0))] {
        let mut options = LoadOptions::new(vec![target.clone()]);
        options.rooms = 2;
        options.receivers = 3;
        options.senders = 2;
        options.messages = 50;
        options.send_over = send_over;
        options.rate = rate;
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
        assert_eq!(report.servers.len(), 1);
        // Every socket of the run is closed again.
        node.wait_for_sockets(0).await;
    }
    node.stop().await;
}
