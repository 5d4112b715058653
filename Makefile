# chatnode: `make run` starts a node with the embedded defaults, `make test` runs every test.

CARGO ?= cargo

.PHONY: run build test lint fmt clean

run:
	$(CARGO) run --release -- serve

build:
	$(CARGO) build --release

test:
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
