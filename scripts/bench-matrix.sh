#!/usr/bin/env bash
# Every figure of BENCHMARKS.md, one `chatnode bench --spawn` run each: the embedded defaults,
# PostgreSQL, and two nodes over AMQP 0-9-1 and AMQP 1.0 on the local RabbitMQ (its AMQP 1.0
# plugin enabled). Each run's report goes to $OUT/<name>.txt (table, then the JSON line);
# the latency charts go to $OUT too. Usage: scripts/bench-matrix.sh [name-filter-regex]
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-bench-results}
BROKER_URL=${BROKER_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
# The bench creates and drops this database on the server for each PostgreSQL run.
PG_SERVER=${PG_SERVER:-postgres://postgres@127.0.0.1:5432}
PG_DATABASE=${PG_DATABASE:-chatnode_bench}
only=${1:-.}

# One build serves every run: the `postgres` feature adds a backend, the embedded path is
# the same code.
cargo build --release --workspace --features postgres
bin=${CARGO_TARGET_DIR:-target}/release/chatnode
mkdir -p "$OUT"

fresh_database() {
    psql "$PG_SERVER/postgres" -q -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS $PG_DATABASE" -c "CREATE DATABASE $PG_DATABASE" >/dev/null
}

failed=()
run() {
    local name=$1
    shift
    [[ $name =~ $only ]] || return 0
    if [[ $name == *postgres* ]]; then fresh_database; fi
    echo "== $name: chatnode bench --spawn $*"
    # A failed run (incomplete delivery, errors) is reported at the end; the others still run.
    # Sends over sockets and to a busy broker can be far ahead of deliveries: wait for them.
    "$bin" bench --spawn --drain-secs 60 "$@" 2>&1 | tee "$OUT/$name.txt" || failed+=("$name")
}

postgres=(--node-arg="--database-url=$PG_SERVER/$PG_DATABASE")
amqp091=(--nodes 2 --node-arg=--transport=amqp091 --node-arg="--broker-url=$BROKER_URL")
amqp10=(--nodes 2 --node-arg=--transport=amqp10 --node-arg="--broker-url=$BROKER_URL")
sweep=(--sweep --step-secs 4 --rooms 10 --receivers 20 --senders 10)

for backend in embedded postgres amqp091 amqp10 amqp091-postgres; do
    case $backend in
        embedded) args=() ;;
        postgres) args=("${postgres[@]}") ;;
        amqp091) args=("${amqp091[@]}") ;;
        amqp10) args=("${amqp10[@]}") ;;
        amqp091-postgres) args=("${amqp091[@]}" "${postgres[@]}") ;;
    esac
    run "$backend-headline" "${args[@]}" --rooms 10 --receivers 50 --senders 10 --messages 20000
    run "$backend-rest-sends" "${args[@]}" --rooms 10 --receivers 1 --senders 400 --messages 100000
    run "$backend-ws-sends" "${args[@]}" --send-over ws --rooms 10 --receivers 1 --senders 400 --messages 100000
    run "$backend-fanout-1x1000" "${args[@]}" --rooms 1 --receivers 1000 --senders 1 --messages 2000
    run "$backend-fanout-1x1000-8-senders" "${args[@]}" --rooms 1 --receivers 1000 --senders 8 --messages 5000
    run "$backend-fanout-100x20" "${args[@]}" --rooms 100 --receivers 20 --senders 400 --messages 50000
    run "$backend-sweep" "${args[@]}" "${sweep[@]}" --svg "$OUT/latency-$backend.svg"
done
run embedded-idle-sockets --idle-sockets 10000
if ((${#failed[@]})); then
    echo "failed runs: ${failed[*]}" >&2
    exit 1
fi
