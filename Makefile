# chatnode: `make run` starts a node with the embedded defaults, `make test` runs every test,
# `make bench` measures a node of the release build (see `chatnode bench --help`), `make soak`
# churns one for SOAK_DURATION and checks that nothing is lost and memory stays flat,
# `make fuzz` fuzzes the input parsers and the API (README "Fuzzing").

CARGO ?= cargo
# The headline run; override e.g. `make bench BENCH_ARGS="--send-over ws --rate 2000"`.
BENCH_ARGS ?= --rooms 10 --receivers 50 --senders 10 --messages 20000 --message-bytes 100
# The soak: e.g. `make soak SOAK_DURATION=1h SOAK_ARGS="--users 50 --rate 300 --svg soak.svg"`.
SOAK_DURATION ?= 10m
SOAK_ARGS ?= --users 20 --rooms 10 --rate 100

.PHONY: run build test lint fmt clean bench soak fuzz

run:
	$(CARGO) run --release -- serve

build:
	$(CARGO) build --release --workspace

# Every test needing no service, then the #[ignore]d tests of each service whose variables
# are set, and the whole suite again on PostgreSQL (CHATNODE_TEST_DATABASE_URL); lists what
# did not run and why. See README "Tests" and scripts/test.sh.
test:
	CARGO="$(CARGO)" bash scripts/test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --features postgres -- -D warnings
	$(CARGO) clippy --workspace --all-targets --no-default-features -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

# A node of its own on 127.0.0.1 (`--spawn`: a free port, a temporary data directory, rate
# limits off), ready before the bench starts and stopped after it; the open-files limit is
# raised to the hard limit first, and the node inherits it.
bench: build
	ulimit -n "$$(ulimit -Hn)" && "$${CARGO_TARGET_DIR:-target}/release/chatnode" bench --spawn $(BENCH_ARGS)

# `--spawn` starts the node the way `bench` does (rate limits off) and stops it afterwards.
soak: build
	"$${CARGO_TARGET_DIR:-target}/release/chatnode" bench --spawn --soak --duration $(SOAK_DURATION) $(SOAK_ARGS)

# Seconds per cargo-fuzz target; the schemathesis run: examples per operation and seconds.
FUZZ_SECONDS ?= 60
API_FUZZ_EXAMPLES ?= 50
API_FUZZ_SECONDS ?= 120
FUZZ_TARGETS = json_bodies ws_frames multipart http_requests tokens amqp_events
# cargo-fuzz builds with nightly-only flags (sanitizer, coverage instrumentation).
FUZZ_CARGO = $(CARGO) +nightly

# Every cargo-fuzz target for FUZZ_SECONDS (new inputs kept in fuzz/corpus, crashes in
# fuzz/artifacts), then schemathesis against a running node. Installs cargo-fuzz if missing.
fuzz:
	@rustup toolchain list | grep -q '^nightly' || { echo "make fuzz needs the nightly toolchain" >&2; exit 1; }
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz@0.13.2
	$(FUZZ_CARGO) fuzz build
	@set -eu; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for target in $(FUZZ_TARGETS); do \
	    echo "== fuzz $$target for $(FUZZ_SECONDS)s"; \
	    mkdir -p fuzz/corpus/$$target fuzz/seeds/$$target "$$tmp/$$target"; \
	    if TMPDIR="$$tmp/$$target" $(FUZZ_CARGO) fuzz run $$target fuzz/corpus/$$target fuzz/seeds/$$target -- \
	        -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 >"$$tmp/log" 2>&1; then \
	        grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' "$$tmp/log" || true; \
	    else \
	        tail -n 200 "$$tmp/log"; exit 1; \
	    fi; \
	done
	API_FUZZ_EXAMPLES=$(API_FUZZ_EXAMPLES) API_FUZZ_SECONDS=$(API_FUZZ_SECONDS) CARGO="$(CARGO)" bash fuzz/api.sh
