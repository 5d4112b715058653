#!/usr/bin/env bash
# Schema-driven API fuzzing: schemathesis (pinned below, in a virtualenv under fuzz/target)
# against the OpenAPI document a real node serves. The node runs on 127.0.0.1 with a
# temporary data directory; a registered user's token authenticates the calls, and that
# user's room (id 1) holds a message so room routes reach past "not found".
# Fails on any 5xx, an answer that violates its schema, an undocumented status or content
# type. API_FUZZ_EXAMPLES (per operation, default 50) and API_FUZZ_SECONDS (whole run,
# default 120) bound the run.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
examples=${API_FUZZ_EXAMPLES:-50}
seconds=${API_FUZZ_SECONDS:-120}
venv=$PWD/fuzz/target/venv
cargo=${CARGO:-cargo}

if [[ $("$venv/bin/schemathesis" --version 2>/dev/null) != *"$SCHEMATHESIS_VERSION"* ]]; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    rm -rf "$venv"
    mkdir -p fuzz/target
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "== building the node"
$cargo build --quiet --bin chatnode
bin="${CARGO_TARGET_DIR:-target}/debug/chatnode"

dir=$(mktemp -d)
env -u CHATNODE_LISTEN -u CHATNODE_DATA_DIR -u CHATNODE_DATABASE_URL -u CHATNODE_TRANSPORT \
    CHATNODE_RATE_LIMITS=off RUST_LOG=warn,chatnode::startup=info \
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir" --log-format json >"$dir/node.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT

addr=
for _ in $(seq 1 300); do
    addr=$(sed -n 's/.*"address":"\([0-9.:]*\)".*"message":"chatnode listening".*/\1/p; s/.*"message":"chatnode listening".*"address":"\([0-9.:]*\)".*/\1/p' "$dir/node.log" | head -n1)
    if [[ -n $addr ]] && python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1])" "http://$addr/readyz" 2>/dev/null; then
        break
    fi
    kill -0 $pid 2>/dev/null || { cat "$dir/node.log"; exit 1; }
    sleep 0.1
done
[[ -n $addr ]] || { echo "the node never became ready"; cat "$dir/node.log"; exit 1; }
base="http://$addr"
echo "== node $pid on $base"

# A user, their room and a message in it.
token=$(python3 - "$base" <<'PY'
import json, sys, urllib.request

base = sys.argv[1]

def call(path, body, token=None):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(request) as response:
        return json.load(response)["data"]

user = call("/api/v1/auth/register/", {
    "email": "fuzz@example.com", "phone_number": "+14155552671",
    "password": "correct-horse-42", "first_name": "Fuzz", "last_name": "Er"})
token = user["credentials"]["access"]
room = call("/api/v1/chat/chatrooms/create/", {"name": "fuzz"}, token)["chatroom"]["id"]
call(f"/api/v1/chat/chatrooms/{room}/messages/send/", {"content": "hello"}, token)
print(token)
PY
)

echo "== schemathesis $SCHEMATHESIS_VERSION: at most $examples examples per operation, ${seconds}s"
# Run from the node's directory: schemathesis keeps a crash cache in the working directory.
cd "$dir"
"$venv/bin/schemathesis" run "$base/api/v1/schema" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance \
    --max-examples "$examples" --max-time "$seconds" --workers 2 \
    --generation-database none --no-color
