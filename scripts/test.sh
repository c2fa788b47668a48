#!/usr/bin/env bash
# scripts/test.sh — narward's one test command (also what CI runs via .ci/run).
#
#   1. scripts/install-test-deps.sh       (installs only what is missing)
#   2. a moto S3 server on a free port     (stopped on exit, even on failure)
#      → NARWARD_TEST_S3_ENDPOINT, AWS_ACCESS_KEY_ID/SECRET_ACCESS_KEY=test, AWS_REGION
#   3. NARWARD_TEST_NIX=1 (+ NIX_REMOTE/NIX_CONFIG) when real Nix works here
#   4. cargo test --workspace
#   5. scripts/fuzz-smoke.sh: every fuzz target built and run ~20 s (if fuzz/ exists)
#   6. cargo clippy --workspace --all-targets -- -D warnings
#   7. cargo fmt --all -- --check
#
# Every cargo step runs even if an earlier one failed; the exit status is
# non-zero if any step failed. The output ends with a one-line summary followed
# by cargo test's "test result:" lines.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-$([[ -t 1 ]] && echo auto || echo never)}

step() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------- deps ----
step "install test dependencies"
bash scripts/install-test-deps.sh

# ---------------------------------------------------------------- moto ----
own_state=
if [[ -z ${NARWARD_MOTO_STATE_DIR:-} ]]; then
  NARWARD_MOTO_STATE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/narward-moto.XXXXXX")
  own_state=1
fi
export NARWARD_MOTO_STATE_DIR
cleanup() {
  bash "$ROOT/scripts/moto.sh" stop 2>/dev/null || true
  if [[ -n $own_state ]]; then rm -rf "$NARWARD_MOTO_STATE_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "start moto S3 server"
moto_env=$(bash scripts/moto.sh start)
eval "$moto_env"
echo "NARWARD_TEST_S3_ENDPOINT=$NARWARD_TEST_S3_ENDPOINT"

# ----------------------------------------------------------------- nix ----
if bash scripts/install-test-deps.sh --check-nix; then
  export NARWARD_TEST_NIX=1
  export NIX_REMOTE=local
  export NIX_CONFIG="${NIX_CONFIG:+$NIX_CONFIG
}build-users-group =
sandbox = false
substituters =
extra-experimental-features = nix-command
narinfo-cache-negative-ttl = 0
narinfo-cache-positive-ttl = 0"
  echo "NARWARD_TEST_NIX=1 ($(nix --version))"
else
  unset NARWARD_TEST_NIX
  echo "NARWARD_TEST_NIX unset: Nix-based tests will be skipped"
fi

# --------------------------------------------------------------- cargo ----
failed=()
run() { # NAME DISPLAY CMD...
  local name=$1 display=$2; shift 2
  step "$name: $display"
  if "$@"; then return 0; fi
  failed+=("$name")
}
cargo_test() { cargo test --workspace 2>&1 | tee "$TEST_LOG"; }   # pipefail is on

TEST_LOG=$NARWARD_MOTO_STATE_DIR/cargo-test.log
run "test" "cargo test --workspace" cargo_test
if [[ -f fuzz/Cargo.toml ]]; then
  # Every fuzz target, instrumented, runs for a short time (default 20 s each;
  # NARWARD_FUZZ_SECONDS changes it): a crash fails the test command.
  fuzz_ran=1
  run "fuzz" "scripts/fuzz-smoke.sh (each target ${NARWARD_FUZZ_SECONDS:-20}s)" \
    bash scripts/fuzz-smoke.sh
fi
run "clippy" "cargo clippy --workspace --all-targets -- -D warnings" \
  cargo clippy --workspace --all-targets -- -D warnings
run "fmt" "cargo fmt --all -- --check" cargo fmt --all -- --check

# Summary; the closing lines repeat cargo test's "test result" lines.
echo
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "==> scripts/test.sh: FAILED: ${failed[*]}"
else
  echo "==> scripts/test.sh: all checks passed (test${fuzz_ran:+, fuzz}, clippy, fmt)"
fi
grep -E '^test result:' "$TEST_LOG" 2>/dev/null || echo "(no cargo test results: see the output of step 'test' above)"
[[ ${#failed[@]} -eq 0 ]]
