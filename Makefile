# mailpulse: `make run` serves, `make test` runs every test, `make bench`
# writes BENCHMARKS.md. Every target installs what it needs first, and only
# what is missing, so a fresh machine with the base Rust toolchain, Node/npm
# and apt needs nothing else. See ../shared/TOOLCHAIN.md for why each pin.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO_LEPTOS_VERSION := 0.3.10
BINARYEN_VERSION := 132
# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)

# Helper tools from npm (wasm-opt) live outside the clone.
TOOLS_DIR ?= $(HOME)/.cache/mailpulse/tools
export PATH := $(TOOLS_DIR)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
# cargo-leptos writes the site (wasm, JS, CSS) here, whatever the target dir.
SITE_ROOT := $(CURDIR)/target/site

MAILPULSE_ADDR ?= 127.0.0.1:3000

.PHONY: help setup setup-test setup-bench build run demo test test-rust test-browser lint fmt bench clean-data

help:
	@echo "make run    build in release mode and serve on http://$(MAILPULSE_ADDR)"
	@echo "make demo   the same, with simulated traffic"
	@echo "make test   every check and test (format, clippy, cargo tests, browser tests)"
	@echo "make bench  run the benchmarks and write BENCHMARKS.md"

## Set-up: each step checks first and installs only what is missing.
setup:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown \
	  || rustup target add wasm32-unknown-unknown
	@if [ "$$(cargo leptos --version 2>/dev/null)" != "cargo-leptos $(CARGO_LEPTOS_VERSION)" ]; then \
	  echo "installing cargo-leptos $(CARGO_LEPTOS_VERSION) (about 11 minutes on 2 cores)"; \
	  cargo install cargo-leptos --version $(CARGO_LEPTOS_VERSION) --locked; \
	fi
	@if [ "$$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $(WASM_BINDGEN_VERSION)" ]; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
	  cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --force; \
	fi
	@if ! wasm-opt --version 2>/dev/null | grep -q "version $(BINARYEN_VERSION)"; then \
	  echo "installing binaryen $(BINARYEN_VERSION) (wasm-opt) from npm"; \
	  mkdir -p $(TOOLS_DIR); \
	  npm install --prefix $(TOOLS_DIR) --no-audit --no-fund binaryen@$(BINARYEN_VERSION); \
	fi

setup-test: setup
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@cd end2end && if [ ! -d node_modules/@playwright/test ] \
	  || ! cmp -s package-lock.json node_modules/.package-lock.json; then \
	  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund; fi

## Build and run.
build: setup
	cargo leptos build --release

run: build
	MAILPULSE_SITE_ROOT=$(SITE_ROOT) MAILPULSE_ADDR=$(MAILPULSE_ADDR) \
	  $(TARGET_DIR)/release/mailpulse serve

demo: build
	MAILPULSE_SITE_ROOT=$(SITE_ROOT) MAILPULSE_ADDR=$(MAILPULSE_ADDR) \
	  $(TARGET_DIR)/release/mailpulse serve --demo

## Tests.
test: setup-test lint test-rust test-browser
	@echo "make test: all checks and tests passed"

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p mailpulse-app --no-default-features --features hydrate \
	  --target wasm32-unknown-unknown -- -D warnings

test-rust:
	cargo test --workspace 2>&1 | tee $(TARGET_DIR)/cargo-test.log
	@echo "== cargo test summary =="; grep -E '^test result:' $(TARGET_DIR)/cargo-test.log

# The browser tests run against a debug build (faster to build, same code).
test-browser: setup-test
	cargo leptos build
	cd end2end && MAILPULSE_BIN=$(TARGET_DIR)/debug/mailpulse MAILPULSE_SITE_ROOT=$(SITE_ROOT) \
	  npx playwright test

# The ingest section also runs its single-event comparison with wrk.
setup-bench: setup-test
	@command -v wrk >/dev/null || { \
	  echo "installing Debian's wrk"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }

# Every benchmark on loopback, bounded in time; writes BENCHMARKS.md.
bench: setup-bench
	cargo leptos build --release
	cargo build --release -p mailpulse --bin mailpulse-bench
	MAILPULSE_SITE_ROOT=$(SITE_ROOT) $(TARGET_DIR)/release/mailpulse-bench \
	  --mailpulse $(TARGET_DIR)/release/mailpulse all --out BENCHMARKS.md
