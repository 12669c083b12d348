#!/usr/bin/env bash
# The whole test suite: unit tests (cargo test) and end-to-end tests that drive a real
# `tusk serve` with real PHP, php-cgi, the AWS CLI and boto3 (pytest, tests/).
set -euo pipefail
cd "$(dirname "$0")/.."

TUSK_WITH_TEST_TOOLS=1 ./scripts/install-deps.sh

echo "==> cargo test"
cargo test --workspace --quiet
./scripts/check-layers.sh   # no two files of crates/gateway or crates/control import each other

echo "==> fuzz smoke run (every cargo-fuzz target over its committed corpus, a few seconds each)"
./scripts/fuzz-smoke.sh

echo "==> building tusk"
cargo build --quiet --bin tusk
export TUSK_BIN="$PWD/target/debug/tusk"

./scripts/validate-k8s.sh   # deploy/kubernetes: render every overlay, validate against the schema, check

echo "==> end-to-end tests"
python3 -m pytest -q tests/

echo "==> benchmark smoke run (checks every scenario runs, not how fast)"
TUSK_WITH_BENCH_TOOLS=1 ./scripts/install-deps.sh
bench/run --quick --tusk-bin "$TUSK_BIN"
# The framework comparison on one app, 1-second rounds: checks it runs (~10 s), not how fast.
bench/frameworks.py --quick --only symfony --tusk-bin "$TUSK_BIN" >/dev/null
