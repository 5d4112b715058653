"""The compose cluster as a user meets it: Alice registers on node 1, Bob on node 3, Bob's
socket is on node 2, Alice sends over REST on node 1, and the message must reach Bob's socket.

    python3 .ci/compose-smoke.py http://127.0.0.1:8001 http://127.0.0.1:8002 http://127.0.0.1:8003

Exits 0 when the message arrived, 1 (with what was seen) otherwise. Every wait is bounded.
"""

import json
import sys
import time
import urllib.error
import urllib.request
import uuid

import websockets.sync.client as ws

HTTP_TIMEOUT = 15  # seconds per request
DELIVERY_TIMEOUT = 20  # seconds from the send until the frame must be on Bob's socket


def call(base, method, path, body=None, token=None):
    """One JSON request; the answer's `data`, or SystemExit naming the status and body."""
    request = urllib.request.Request(base + "/api/v1" + path, method=method)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("content-type", "application/json")
    if token is not None:
        request.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
            return json.load(answer)["data"]
    except urllib.error.HTTPError as error:
        raise SystemExit(f"{method} {base}{path}: {error.code} {error.read()[:500]!r}")


def register(base, name, phone):
    # The README's walkthrough accounts: the cluster's database is a fresh volume each run.
    account = {
        "email": f"{name}@example.com",
        "phone_number": phone,
        "password": f"{name}-smoke-password-42",
        "first_name": name.capitalize(),
        "last_name": "Smoke",
    }
    data = call(base, "POST", "/auth/register/", account)
    return data["credentials"]["access"]


def main():
    node1, node2, node3 = sys.argv[1:4]
    alice = register(node1, "alice", "+14155552671")
    bob = register(node3, "bob", "+447911123456")
    room = call(node1, "POST", "/chat/chatrooms/create/", {"name": "Compose smoke"}, alice)
    room_id = room["chatroom"]["id"]
    call(node3, "POST", f"/chat/chatrooms/{room_id}/enter/", token=bob)

    url = node2.replace("http://", "ws://", 1) + f"/ws/chat/{room_id}/?token={bob}"
    text = f"hello from node1 {uuid.uuid4().hex}"
    seen = []
    with ws.connect(url, open_timeout=HTTP_TIMEOUT) as socket:
        # The first frame (the room's receipt positions) says the socket is in the room.
        seen.append(json.loads(socket.recv(timeout=HTTP_TIMEOUT)))
        sent_at = time.monotonic()
        call(node1, "POST", f"/chat/chatrooms/{room_id}/messages/send/", {"content": text}, alice)
        deadline = sent_at + DELIVERY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                frame = json.loads(socket.recv(timeout=max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                break
            seen.append(frame)
            data = frame.get("data", {})
            if data.get("purpose") == "new_chat_message" and data.get("message") == text:
                took = time.monotonic() - sent_at
                print(f"compose smoke: node1 -> node2 socket in {took * 1000:.0f} ms")
                return 0
    print(f"compose smoke: the message sent on node1 never reached node2's socket; saw {seen}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
