#!/usr/bin/env bash
# `make test`: every test that needs nothing, then the #[ignore]d tests of each service this
# environment provides (named by the filters below), and again with `--features postgres`
# on PostgreSQL when CHATNODE_TEST_DATABASE_URL is set. What did not run is listed at the
# end with why; with CHATNODE_TEST_REQUIRE_{BROKER,DB,FAULTS,PROMETHEUS,NPM}=1 (CI) a missing service fails.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}

selected=()   # filters of the ignored tests to run
known=()      # filters of every service, to check each ignored test belongs to one
not_run=()    # "service (why)" lines
not_run_filters=()  # the filters of each, space-separated
ignored=()    # every ignored test listed by the builds run
required_missing=0

set_() { [ -n "${!1:-}" ]; }
has() { command -v "$1" >/dev/null; }

# service NAME PRESENT(0|1) REQUIRE_VAR WHY FILTER...
service() {
    local name=$1 present=$2 require=$3 why=$4
    shift 4
    known+=("$@")
    if [ "$present" = 1 ]; then
        selected+=("$@")
        return
    fi
    not_run+=("$name ($why)")
    not_run_filters+=("$*")
    if [ "${!require:-}" = 1 ]; then
        echo "error: $require=1 but $name is missing: $why" >&2
        required_missing=1
    fi
}

present() { if "$@"; then echo 1; else echo 0; fi; }

service "RabbitMQ" "$(present set_ CHATNODE_TEST_AMQP_URL)" CHATNODE_TEST_REQUIRE_BROKER \
    "set CHATNODE_TEST_AMQP_URL" \
    rabbitmq_3 cluster::amqp faults::amqp091_a_node_killed \
    bench::a_spawned_two_node_bench_over_the_broker takeover::amqp091 typing::amqp \
    logs::amqp091 metrics::amqp presence::amqp asyncapi::amqp091 events::amqp
service "AsyncAPI parser (npm)" "$(present test -d tests/asyncapi/node_modules)" \
    CHATNODE_TEST_REQUIRE_NPM "needs Node.js; run npm ci --prefix tests/asyncapi" \
    asyncapi::
service "RabbitMQ 4" "$(present set_ CHATNODE_TEST_AMQP4_URL)" CHATNODE_TEST_REQUIRE_BROKER \
    "set CHATNODE_TEST_AMQP4_URL" \
    rabbitmq_4
service "RabbitMQ containers" "$(present set_ CHATNODE_TEST_RABBITMQ_IMAGE)" \
    CHATNODE_TEST_REQUIRE_BROKER "needs Docker; set CHATNODE_TEST_RABBITMQ_IMAGE" \
    _a_broker_restart_mid_stream
service "disk faults" "$(present test "$(id -u)" = 0)" CHATNODE_TEST_REQUIRE_FAULTS \
    "needs root and mount" \
    faults::a_full_disk faults::a_disk_turned
service "Prometheus" "$(present has prometheus)" CHATNODE_TEST_REQUIRE_PROMETHEUS \
    "install Debian's prometheus" \
    metrics::prometheus
service "PostgreSQL" "$(present set_ CHATNODE_TEST_DATABASE_URL)" CHATNODE_TEST_REQUIRE_DB \
    "set CHATNODE_TEST_DATABASE_URL; also skips the whole suite's pass on PostgreSQL" \
    store::postgres store::conversations::postgres store::admin::postgres store::presence::postgres \
    store::events::postgres store::reactions::postgres

report() {
    local i name filter
    if [ ${#not_run[@]} -gt 0 ]; then
        echo
        echo "NOT RUN (counted as ignored above), by missing service:"
        for i in "${!not_run[@]}"; do
            echo "  - ${not_run[$i]}:"
            for name in $(printf '%s\n' "${ignored[@]}" | sort -u); do
                for filter in ${not_run_filters[$i]}; do
                    if [[ $name == *"$filter"* ]]; then echo "      $name"; break; fi
                done
            done
        done
    else
        echo
        echo "every service test ran"
    fi
}
trap report EXIT
[ "$required_missing" = 0 ] || exit 1

# Every ignored test must belong to a service above, or no environment would ever run it.
check_known() {
    local name filter orphans=()
    while IFS= read -r name; do
        ignored+=("$name")
        for filter in "${known[@]}"; do
            [[ $name == *"$filter"* ]] && continue 2
        done
        orphans+=("$name")
    done < <("$CARGO" test --workspace --all-targets "$@" -- --ignored --list 2>/dev/null | sed -n 's/: test$//p')
    if [ ${#orphans[@]} -gt 0 ]; then
        echo "error: ignored tests no service in scripts/test.sh selects:" >&2
        printf '  %s\n' "${orphans[@]}" >&2
        exit 1
    fi
}

# run [cargo flags...]: the tests needing nothing, then the selected ignored ones.
run() {
    # `chatnode bench` (tests/it/bench.rs) runs the chatnode-bench binary beside the node's.
    "$CARGO" build -p chatnode-bench
    "$CARGO" test --workspace --all-targets "$@"
    check_known "$@"
    if [ ${#selected[@]} -gt 0 ]; then
        "$CARGO" test --workspace --all-targets "$@" -- --ignored "${selected[@]}"
    fi
}

run
# An embedded-only build (no broker client compiled in) and its refusal of broker transports.
"$CARGO" test --lib --no-default-features
if set_ CHATNODE_TEST_DATABASE_URL; then
    run --features postgres
fi
