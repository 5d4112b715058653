//! Connection floods against the real binary, its memory read from /proc: connections that
//! never send a byte and connections that send a request head up to the 32 KiB cap and never
//! finish it. Each holds a slot and at most a capped head, and the memory comes back when
//! they go. Prints its figures (`cargo test --test it connection_floods -- --nocapture`);
//! BENCHMARKS.md quotes them.

use std::time::Duration;

use chatnode_bench::procstat::{raise_open_files_limit, reset_peak};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::ws_floods::Binary;

/// Of each kind; the test process and the node each need a descriptor per connection.
const CONNECTIONS: usize = 500;
/// Just under the node's 32 KiB head cap, without the blank line that would end the head.
const HEAD_BYTES: usize = 31 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_unfinished_connections_hold_bounded_memory_that_comes_back() {
    let limit = raise_open_files_limit().expect("the open-files limit can be read");
    assert!(
        limit > (2 * CONNECTIONS + 64) as u64,
        "{limit} open files are too few for this test"
    );
    // Started after the raise, so the node inherits it; the per-address cap is lifted.
    let node = Binary::start(&["--rate-limits", "off"]).await;
    let (start, _) = node.rss_mib();
    assert!(reset_peak(node.pid()), "VmHWM can be reset");

    let mut held = Vec::with_capacity(2 * CONNECTIONS);
    for _ in 0..CONNECTIONS {
        held.push(TcpStream::connect(node.address).await.unwrap());
    }
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
        "a".repeat(HEAD_BYTES)
    );
    for _ in 0..CONNECTIONS {
        let mut tcp = TcpStream::connect(node.address).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        held.push(tcp);
    }
    // Let the node read what was sent (bounded: a fixed pause, then the reading).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (during, peak) = node.rss_mib();
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (after, _) = node.rss_mib();
    println!(
        "connection flood: {CONNECTIONS} silent + {CONNECTIONS} unfinished heads of {} KiB; node RSS \
         {start:.1} MiB at the start, {during:.1} MiB held (peak {peak:.1}, +{:.1}), {after:.1} MiB \
         after they closed",
        HEAD_BYTES / 1024,
        peak - start
    );
    // The heads alone are 15.5 MiB; a connection's own state is a few KiB. Before the cap a
    // head could be ~400 KB (2,000 of them took 784 MiB that stayed).
    assert!(peak - start < 48.0, "peak RSS grew {:.1} MiB", peak - start);
    assert!(
        after - start < 50.0,
        "RSS {after:.1} MiB after, {start:.1} before"
    );
}
