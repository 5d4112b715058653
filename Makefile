# chatnode: `make run` starts a node with the embedded defaults, `make test` runs every test.

CARGO ?= cargo

.PHONY: run build test lint fmt clean

run:
	$(CARGO) run --release -- serve

build:
	$(CARGO) build --release

# The whole suite on SQLite, then again with the `postgres` feature on PostgreSQL
# (CHATNODE_TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test).
test:
	$(CARGO) test --all-targets
	@if [ -n "$$CHATNODE_TEST_DATABASE_URL" ]; then \
		$(CARGO) test --all-targets --features postgres; \
	elif [ "$$CHATNODE_TEST_REQUIRE_DB" = 1 ]; then \
		echo "CHATNODE_TEST_REQUIRE_DB=1 but CHATNODE_TEST_DATABASE_URL is not set" >&2; exit 1; \
	else \
		echo "notice: CHATNODE_TEST_DATABASE_URL is not set: skipping the PostgreSQL pass"; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features postgres -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
