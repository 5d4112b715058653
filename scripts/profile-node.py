#!/usr/bin/env python3
"""Drives a node running under callgrind (started with --instr-atstart=no) through two
phases and dumps one profile per phase, so instruction counts per send and per delivery
can be read off. See BENCHMARKS.md ("Profiles") for the commands. Needs `websockets`.

Phase "sends": MESSAGES REST sends from SENDERS concurrent senders into a room without sockets
(store, group commit, outbox relay).
Phase "fanout": SOCKETS sockets in one room, MESSAGES REST sends from one sender, until every
socket has every message.
"""
import argparse
import asyncio
import json
import subprocess
import time
import urllib.request
import uuid

import websockets

PASSWORD = "a-long-passphrase-42"


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(request, data, timeout=600) as response:
        return json.load(response)


def register(base, tag, i):
    body = {"email": f"p{i}-{tag}@example.com", "phone_number": "+14155552671",
            "password": PASSWORD, "first_name": "Prof", "last_name": "User"}
    data = call(base, "POST", "/api/v1/auth/register/", body)["data"]
    return data["user"]["id"], data["credentials"]["access"]


def room(base, owner, members, name):
    body = {"name": name, "members": members}
    return call(base, "POST", "/api/v1/chat/chatrooms/create/", body, owner)["data"]["chatroom"]["id"]


def callgrind(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


async def send_all(base, token, room_id, messages, concurrency, size):
    loop = asyncio.get_running_loop()
    content = "x" * size
    counter = iter(range(messages))

    def sender():
        for _ in counter:
            call(base, "POST", f"/api/v1/chat/chatrooms/{room_id}/messages/send/",
                 {"content": content}, token)

    await asyncio.gather(*(loop.run_in_executor(None, sender) for _ in range(concurrency)))


async def receive(ws, expected, done):
    got = 0
    while got < expected:
        frame = json.loads(await ws.recv())
        if frame.get("data", {}).get("event") == "message":
            got += 1
    done.append(1)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--pid", type=int, required=True, help="the node under callgrind")
    p.add_argument("--users", type=int, default=10, help="receiving users (sockets are spread over them)")
    p.add_argument("--sockets", type=int, default=1000)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--senders", type=int, default=10, help="concurrent senders in the sends phase")
    p.add_argument("--bytes", type=int, default=100)
    a = p.parse_args()
    tag = uuid.uuid4().hex[:8]
    sender_id, sender = register(a.base, tag, "s")
    users = [register(a.base, tag, i) for i in range(a.users)]
    quiet = room(a.base, sender, [], "sends")
    busy = room(a.base, sender, [u for u, _ in users], "fanout")

    callgrind(a.pid, "-z")
    callgrind(a.pid, "-i", "on")
    started = time.monotonic()
    await send_all(a.base, sender, quiet, a.messages, a.senders, a.bytes)
    callgrind(a.pid, "-i", "off")
    callgrind(a.pid, "--dump=sends")
    print(f"sends: {a.messages} in {time.monotonic() - started:.1f} s")

    url = a.base.replace("http://", "ws://")
    sockets = []
    for i in range(a.sockets):
        token = users[i % a.users][1]
        sockets.append(await websockets.connect(f"{url}/ws/chat/{busy}/?token={token}",
                                                max_size=None, ping_interval=None))
    while call(a.base, "GET", "/readyz")["data"]["sockets"] < a.sockets:
        await asyncio.sleep(0.2)
    callgrind(a.pid, "-z")
    callgrind(a.pid, "-i", "on")
    started = time.monotonic()
    done = []
    receivers = [asyncio.create_task(receive(ws, a.messages, done)) for ws in sockets]
    await send_all(a.base, sender, busy, a.messages, 1, a.bytes)
    await asyncio.wait_for(asyncio.gather(*receivers), timeout=1800)
    callgrind(a.pid, "-i", "off")
    callgrind(a.pid, "--dump=fanout")
    print(f"fanout: {a.messages} x {a.sockets} = {a.messages * a.sockets} deliveries in "
          f"{time.monotonic() - started:.1f} s")
    for ws in sockets:
        await ws.close()


asyncio.run(main())
