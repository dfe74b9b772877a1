# The front door. `make test` is the README's test command; CI runs it via .ci/run.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
STACK := infra/local/stack

.PHONY: test unit stack-up stack-down stack-status fixtures lint

## Install (first time ~25 min, cached) and start the local stack, then run every test against it.
test: stack-up
	cargo test --workspace --locked --no-fail-fast

## Tests of pure logic only: no services needed.
unit:
	cargo test --locked -p telemetry

stack-up:
	$(STACK) up

stack-down:
	$(STACK) down

stack-status:
	$(STACK) status

## Rewrite the committed sample events (deterministic).
fixtures:
	cargo run --locked -q -p bridgectl -- generate fixtures --out events

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
