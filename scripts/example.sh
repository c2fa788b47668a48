#!/usr/bin/env bash
# scripts/example.sh — narward's main job on the bundled example cache (examples/cache,
# written by real Nix), with the embedded default store in ./.narward-example:
#   index → audit → plan (examples/policy.toml) → why → report, then on a COPY of the cache
#   (never the bundled one): index → plan → apply → verify → recover.
# Needs only cargo. The audit finds the defects planted in the example on purpose
# (see examples/README.md) and exits 1; this script shows that and goes on.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --quiet --bin narward
N=${CARGO_TARGET_DIR:-target}/debug/narward
STATE=${NARWARD_STATE:-.narward-example}
OUT=${NARWARD_EXAMPLE_OUT:-example-output}
rm -rf "$STATE" "$OUT"
mkdir -p "$OUT"
run() { printf '\n$ %s\n' "$*"; "$@"; }

run $N --state "$STATE" index --cache "file://$PWD/examples/cache"
set +e
run $N --state "$STATE" audit --trusted-key "$(cat examples/trusted-key.txt)"
echo "(audit exit status $?: the example has planted defects)"
set -e
run $N --state "$STATE" plan --policy examples/policy.toml --out "$OUT/plan"
run $N --state "$STATE" why --plan "$OUT/plan" /nix/store/cihbjbd97jhajp3a3i7bn78zlylxzhlw-libbase-2.38
run $N --state "$STATE" why --plan "$OUT/plan" k36ahwak8pqilvk9a22a9c6m9piays98
if $N report --help >/dev/null 2>&1; then
  run $N --state "$STATE" report --policy examples/policy.toml --plan "$OUT/plan" --out "$OUT/report"
  echo
  echo "report: $OUT/report/report.html"
fi
run $N --state "$STATE" export --parquet "$OUT/parquet"

# Apply works on a copy of the cache, in its own state directory: the bundled example
# stays as it is.
mkdir -p "$OUT/apply"
COPY="$(cd "$OUT/apply" && pwd)/cache"
ASTATE="$OUT/apply/state"
cp -a examples/cache "$COPY"
run $N --state "$ASTATE" index --cache "file://$COPY"
run $N --state "$ASTATE" plan --policy examples/policy-delete.toml --out "$OUT/apply/plan"
run $N --state "$ASTATE" apply "$OUT/apply/plan" --dry-run
set +e
run $N --state "$ASTATE" apply "$OUT/apply/plan" --confirm cache
echo "(apply exit status $?: 1 when objects were skipped, see above)"
set -e
if $N verify --help >/dev/null 2>&1; then
  run $N --state "$ASTATE" verify
fi
run $N --state "$ASTATE" recover /nix/store/k36ahwak8pqilvk9a22a9c6m9piays98-libfoo-1.1
echo
echo "applied copy: $COPY (archive: $COPY.narward-archive, quarantine: $COPY.narward-quarantine)"
