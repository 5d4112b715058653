//! `make test`'s selection (scripts/test.sh), run against a stand-in for cargo that records
//! how it is called: the ignored tests of a service run only when its variable is set, what
//! did not run is listed with why, a missing service fails under CHATNODE_TEST_REQUIRE_*,
//! and an ignored test no service selects fails the run.

use std::path::Path;
use std::process::{Command, Output};

/// Records its arguments; for `--list` prints `listed` as libtest would.
fn fake_cargo(dir: &Path, listed: &[&str]) -> std::path::PathBuf {
    let path = dir.join("cargo");
    let list: String = listed
        .iter()
        .map(|n| format!("echo '{n}: test'; "))
        .collect();
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> '{}'\ncase \"$*\" in *--list*) {list};; esac\nexit 0\n",
        dir.join("calls").display()
    );
    std::fs::write(&path, script).unwrap();
    Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    path
}

fn run(dir: &Path, cargo: &Path, env: &[(&str, &str)]) -> (Output, String) {
    let mut command = Command::new("bash");
    command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test.sh"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CHATNODE_TEST_") {
            command.env_remove(name);
        }
    }
    let output = command
        .env("CARGO", cargo)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let calls = std::fs::read_to_string(dir.join("calls")).unwrap_or_default();
    let _ = std::fs::remove_file(dir.join("calls"));
    (output, calls)
}

const LISTED: &[&str] = &[
    "transport::amqp10::tests::x::rabbitmq_4",
    "cluster::amqp091_every_message_reaches_every_node_once_in_order",
];

#[test]
fn services_absent_are_listed_as_not_run_and_present_ones_run() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = fake_cargo(dir.path(), LISTED);

    let (output, calls) = run(dir.path(), &cargo, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("NOT RUN"), "{stdout}");
    assert!(stdout.contains("set CHATNODE_TEST_AMQP4_URL"), "{stdout}");
    assert!(stdout.contains("      transport::amqp10::tests::x::rabbitmq_4"));
    assert!(!calls.contains("rabbitmq_4"), "not selected: {calls}");

    let (output, calls) = run(
        dir.path(),
        &cargo,
        &[("CHATNODE_TEST_AMQP4_URL", "amqp://x")],
    );
    assert!(output.status.success());
    // Other services present here (npm modules, root) add their filters to the same run.
    let ignored_run = calls.lines().find(|l| {
        l.contains("-- --ignored ") && l.split_whitespace().any(|word| word == "rabbitmq_4")
    });
    assert!(ignored_run.is_some(), "selected: {calls}");
    assert!(
        !calls.contains("cluster::amqp"),
        "only the services present: {calls}"
    );
}

#[test]
fn a_required_service_that_is_missing_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = fake_cargo(dir.path(), LISTED);
    let (output, calls) = run(dir.path(), &cargo, &[("CHATNODE_TEST_REQUIRE_BROKER", "1")]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("CHATNODE_TEST_REQUIRE_BROKER=1"));
    assert!(calls.is_empty(), "no test ran: {calls}");
}

#[test]
fn an_ignored_test_no_service_selects_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = fake_cargo(dir.path(), &["somewhere::an_orphan"]);
    let (output, _) = run(dir.path(), &cargo, &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("somewhere::an_orphan"));
}
