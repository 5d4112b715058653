#!/usr/bin/env python3
"""Start-up to ready on an existing database: starts `chatnode serve` once to create the
database (with a user and a room in it), stops it, then starts it --runs times and reports
the time from spawning the process to its first 200 from /readyz (polled every millisecond).

Usage: scripts/startup-time.py [--bin target/release/chatnode] [--runs 10] [serve args...]
"""
import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False


def start(args, data_dir, port):
    command = [args.bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir]
    command += ["--rate-limits", "off", *args.serve_args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATNODE_")}
    env["RUST_LOG"] = "warn"
    began = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    deadline = began + 30
    while not ready(port):
        if process.poll() is not None or time.perf_counter() > deadline:
            process.kill()
            raise SystemExit(f"the node did not become ready: {command}")
        time.sleep(0.001)
    return process, (time.perf_counter() - began) * 1000


def stop(process):
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)


def post(port, path, body, token=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="target/release/chatnode")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("serve_args", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        process, _ = start(args, data_dir, port)
        session = post(port, "/api/v1/auth/register/", {
            "email": "startup@example.com", "phone_number": "+14155552671",
            "password": "correct-horse-42", "first_name": "Start", "last_name": "Up",
        })
        token = session["data"]["credentials"]["access"]
        post(port, "/api/v1/chat/chatrooms/create/", {"name": "startup"}, token)
        stop(process)
        times = []
        for _ in range(args.runs):
            process, elapsed = start(args, data_dir, port)
            times.append(elapsed)
            stop(process)
    print(f"start-up to ready over {len(times)} runs: min {min(times):.1f} ms, "
          f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms")


if __name__ == "__main__":
    main()
