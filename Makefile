# The front door. `make test` is the README's test command; CI runs it via .ci/run.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
STACK := infra/local/stack

.PHONY: test demo unit chaos image image-amd64 image-arm64-check image-tag image-push compose-check sqs-check lambda lambda-invoke-check terraform-check bench-lambda bench-writer bench-storage bench-e2e stack-up stack-down stack-status fixtures lint
.PHONY: fuzz screenshots

## The README's first command: the whole pipeline end to end on the local stack, with exact counts.
demo:
	infra/local/demo

## The unit tier first (no services), then install (first time ~25 min, cached) and start the local
## stack and run every stack test: the Rust integration tests, the Lambda zips, the cargo-lambda
## watch/invoke path, and the Terraform checks.
test: unit
	$(MAKE) stack-up
	infra/local/sqs-check
	$(MAKE) image-amd64
	infra/local/browser-tools
	cargo test --workspace --locked --no-fail-fast --test '*'
	$(MAKE) fuzz FUZZ_SECONDS=20
	$(MAKE) lambda lambda-invoke-check terraform-check compose-check

## The stack's SQS server (ministack) against stock moto: the same SQS transcript may differ only as
## infra/local/sqs-known-differences.txt lists.
sqs-check: stack-up
	infra/local/sqs-check

## `cargo lambda watch` + `cargo lambda invoke --data-file events/sqs/...` return the expected responses.
lambda-invoke-check:
	infra/lambda/invoke-check

## fmt, validate, checkov, apply against moto (+ bridgectl replay/esm on the applied queue), IAM policy check, destroy.
terraform-check:
	cargo build --locked -q -p bridgectl
	BRIDGECTL=target/debug/bridgectl bash infra/terraform/check

## The Lambda zips: target/lambda/sqs-to-kafka/bootstrap.zip (arm64, what Terraform deploys; x86_64 if the
## arm64 target cannot be installed) and target/lambda-x86_64/sqs-to-kafka/bootstrap.zip (runs on this machine).
lambda:
	if rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then \
	  infra/local/lambda-tools cargo lambda build --release --arm64 --output-format zip -p sqs-to-kafka; \
	else \
	  echo "arm64 target unavailable: target/lambda holds an x86_64 build (set lambda_architecture = \"x86_64\")"; \
	  infra/local/lambda-tools cargo lambda build --release --output-format zip -p sqs-to-kafka; \
	fi
	infra/local/lambda-tools cargo lambda build --release --output-format zip -p sqs-to-kafka --lambda-dir target/lambda-x86_64

## The writer's container image (FROM scratch, podman; infra/image/Containerfile): both
## architectures and a manifest list. `make image-amd64` is what `make test` builds and runs.
image:
	infra/image/build amd64 arm64

image-amd64:
	infra/image/build amd64

## The arm64 image cannot run here: its binary and libraries are aarch64 and its config says arm64.
image-arm64-check:
	infra/image/build arm64
	infra/image/check-arm64

## The tag `make image` gives: <crate version>-<git short sha>[-dirty].
image-tag:
	@infra/image/tag

## Push the manifest list to REPOSITORY (terraform output writer_repository_url), after a login.
image-push:
	@test -n "$(REPOSITORY)" || { echo "usage: make image-push REPOSITORY=<writer_repository_url>"; exit 2; }
	infra/image/push "$(REPOSITORY)"

## infra/docker-compose.yml is valid (Debian's docker-compose 1.29 `config`, no engine needed).
compose-check:
	infra/local/compose-check

## Benchmarks (not tests): each prints a ratio against a ceiling measured in the same run and ends with a RESULT line.
bench-lambda: stack-up lambda
	cargo build --release --locked -q -p bench
	set -a; . .stack/stack.env; set +a; target/release/bench lambda

bench-writer: stack-up
	cargo build --release --locked -q -p bench -p kafka-to-mongo
	set -a; . .stack/stack.env; set +a; target/release/bench writer --mode $(or $(MODE),regular)

## The same 1,000,000 measurements in a regular and a time-series collection: collStats sizes.
bench-storage: stack-up
	cargo build --release --locked -q -p bench
	set -a; . .stack/stack.env; set +a; target/release/bench storage --docs $(or $(DOCS),1000000)

bench-e2e: stack-up
	cargo build --release --locked -q -p bench
	set -a; . .stack/stack.env; set +a; target/release/bench e2e --rate $(or $(RATE),1000) --duration 30s

## The long mixed fault run with an exact audit (RELIABILITY.md): 200,000 messages from 200 devices,
## the writer SIGKILLed and a second writer joining several times, MongoDB stopped and restarted, the
## broker restarted, the DLQ topic missing. `make test` runs the same driver short.
chaos: stack-up
	cargo build --release --locked -q -p bench -p kafka-to-mongo
	target/release/bench chaos --messages $(or $(MESSAGES),200000) --devices 200 --kills 5 --joins 3 \
	  --mode regular,timeseries --writer-bin target/release/kafka-to-mongo

## The console's pages as PNGs under docs/console/ (a fresh pipeline with the sample replay; Chromium).
screenshots: stack-up
	infra/local/browser-tools
	cargo build --locked -q -p bridgectl -p e2e-tests --bins
	set -a; . .stack/stack.env; set +a; BRIDGECTL=target/debug/bridgectl target/debug/console-screenshots docs/console

## Every crate's unit tests, doc tests and the pure integration tests: no services, no stack variables.
unit:
	infra/local/unit

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

## The fuzz targets (fuzz/README.md): each target's regressions, then FUZZ_SECONDS (default 60) of libFuzzer
## on one core; one summary line per target; fails on any crash or broken invariant. cargo-fuzz is
## installed (cached) by infra/local/fuzz-tools; the nightly toolchain builds the targets.
fuzz:
	FUZZ_STRICT=$(or $(FUZZ_STRICT),0) infra/local/fuzz-tools run $(or $(FUZZ_SECONDS),60)
