#!/usr/bin/env bash
# nix-substitute-check.sh CACHE_URL PUBKEY STORE_PATH...
#
# Exits 0 iff a real Nix client can substitute every STORE_PATH (with its
# closure) from the binary cache at CACHE_URL into a throwaway store, checking
# signatures against PUBKEY. PUBKEY is a key line ("name:base64...") or a file
# containing one. CACHE_URL is anything Nix accepts as a store URL, e.g.
# http://127.0.0.1:PORT/BUCKET or file:///abs/dir.
#
# Nothing is cached between runs: a fresh store, a fresh XDG_CACHE_HOME and
# zero narinfo cache TTLs. Nix's error output is printed on failure.
# Set NARWARD_SUBSTITUTE_VERBOSE=1 to see Nix's output on success too.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 CACHE_URL PUBKEY STORE_PATH..." >&2
  exit 2
fi
CACHE_URL=$1; PUBKEY=$2; shift 2
if [[ -f $PUBKEY ]]; then PUBKEY=$(tr -d '\n' < "$PUBKEY"); fi
command -v nix >/dev/null || { echo "nix-substitute-check: nix not found" >&2; exit 2; }

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/narward-subst.XXXXXX")
cleanup() { chmod -R u+w "$SCRATCH" 2>/dev/null || true; rm -rf "$SCRATCH"; }
trap cleanup EXIT

export NIX_REMOTE=local
export XDG_CACHE_HOME=$SCRATCH/xdg-cache
export NIX_CONFIG="${NIX_CONFIG:+$NIX_CONFIG
}build-users-group =
sandbox = false
substituters =
require-sigs = true
extra-experimental-features = nix-command
narinfo-cache-negative-ttl = 0
narinfo-cache-positive-ttl = 0
connect-timeout = 5"

STORE=$SCRATCH/store
log=$SCRATCH/nix.log
if ! nix copy --from "$CACHE_URL" --store "$STORE" \
      --trusted-public-keys "$PUBKEY" "$@" >"$log" 2>&1; then
  echo "nix-substitute-check: FAILED to substitute from $CACHE_URL:" >&2
  sed 's/^/  nix: /' "$log" >&2
  exit 1
fi
# Double-check: every requested path (and its closure) is now valid there.
if ! nix path-info -r --store "$STORE" "$@" >"$SCRATCH/closure" 2>"$log"; then
  echo "nix-substitute-check: paths not valid in the scratch store after copy:" >&2
  sed 's/^/  nix: /' "$log" >&2
  exit 1
fi
if [[ ${NARWARD_SUBSTITUTE_VERBOSE:-0} == 1 ]]; then cat "$log" >&2; fi
echo "nix-substitute-check: OK: $# path(s), closure of $(wc -l < "$SCRATCH/closure") path(s) substituted from $CACHE_URL"
