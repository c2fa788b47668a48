#!/usr/bin/env bash
# scripts/fuzz-smoke.sh [SECONDS] — build every fuzz target in fuzz/ with libFuzzer's
# coverage instrumentation and run each one for SECONDS (default $NARWARD_FUZZ_SECONDS,
# else 20). Part of the test command (scripts/test.sh): a target that panics, aborts,
# leaks past libFuzzer's limits or times out on one input fails the run, and the input
# is left in fuzz/artifacts/<target>/ to replay and turn into a regression test.
#
# No nightly toolchain and no cargo-fuzz: these are the flags cargo-fuzz passes (without
# AddressSanitizer, which safe Rust does not need), unlocked on stable by RUSTC_BOOTSTRAP.
# The targets are read from fuzz/Cargo.toml, so a new [[bin]] is run without editing this.
# Seed corpora: the narinfo target starts from the 489 real cache.nixos.org narinfos in
# crates/narward-formats/tests/data; the others start empty. Corpora grow in
# fuzz/corpus/<target>/ (gitignored) and are reused by the next run on the same machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_EACH=${1:-${NARWARD_FUZZ_SECONDS:-20}}
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
cd "$ROOT/fuzz"

targets=$(sed -n '/^\[\[bin\]\]/,/^path/ s/^name = "\(.*\)"/\1/p' Cargo.toml)
[[ -n $targets ]] || { echo "fuzz-smoke: no [[bin]] targets in fuzz/Cargo.toml" >&2; exit 2; }

echo "fuzz-smoke: building $(echo $targets | wc -w) targets for $TRIPLE (instrumented, release)"
RUSTC_BOOTSTRAP=1 \
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --release --quiet --target "$TRIPLE" --target-dir target/smoke

# Seed the narinfo corpus from the real sample (one narinfo per file).
if [[ ! -d corpus/narinfo ]]; then
  mkdir -p corpus/narinfo
  python3 - <<'PY'
import gzip
text = gzip.open('../crates/narward-formats/tests/data/cache-nixos-org-narinfos.txt.gz', 'rt').read()
for i, r in enumerate(r for r in text.split('\n\n') if r.strip()):
    open(f'corpus/narinfo/seed{i:03}', 'w').write(r.strip('\n') + '\n')
PY
fi

failed=()
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  if "target/smoke/$TRIPLE/release/$t" "corpus/$t" -max_total_time="$SECONDS_EACH" \
      -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz-smoke: $t: ok, ${runs:-?} inputs in ${SECONDS_EACH}s"
  else
    echo "fuzz-smoke: $t: FAILED; last lines of its output:" >&2
    tail -n 30 "$log" >&2
    echo "fuzz-smoke: the failing input is in fuzz/artifacts/$t/" >&2
    failed+=("$t")
  fi
  rm -f "$log"
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz-smoke: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz-smoke: all $(echo $targets | wc -w) targets ran ${SECONDS_EACH}s each without a crash"
