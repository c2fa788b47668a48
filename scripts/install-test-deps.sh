#!/usr/bin/env bash
# install-test-deps.sh [--check-nix]
#
# Idempotently installs what narward's tests need, only when missing:
#   Debian: nix-bin (Nix 2.8), xz-utils, chromium, python3(-pip) when needed
#   PyPI:   moto[server] (brings boto3)
# and checks that Nix works as root on the local /nix/store.
# `apt-get update` runs only when a Debian package must be installed.
#
# --check-nix   only run the Nix smoke test; exit 0 iff Nix can build and add
#               paths as root with the settings narward's scripts use.
#
# Nix settings used everywhere (no /etc edits needed):
#   NIX_REMOTE=local   (no nix-daemon in containers)
#   NIX_CONFIG: build-users-group = (empty: nixbld group not required),
#               sandbox = false, substituters = (no network),
#               extra-experimental-features = nix-command
# Set NARWARD_REQUIRE_NIX=1 to make a failing Nix smoke test fatal.
set -euo pipefail

log() { echo "install-test-deps: $*" >&2; }
die() { echo "install-test-deps: ERROR: $*" >&2; exit 1; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); fi
fi

nix_env() {
  export NIX_REMOTE=local
  export NIX_CONFIG="${NIX_CONFIG:+$NIX_CONFIG
}build-users-group =
sandbox = false
substituters =
extra-experimental-features = nix-command"
}

# Builds a trivial derivation with /bin/sh and adds a file: exactly what the
# fixture scripts do. Returns non-zero (with the reason on stderr) on failure.
check_nix() {
  command -v nix-build >/dev/null 2>&1 && command -v nix-store >/dev/null 2>&1 \
    && command -v nix >/dev/null 2>&1 || { log "nix not installed"; return 1; }
  [[ $(id -u) -eq 0 ]] || { log "Nix tests need root (local /nix/store without a daemon)"; return 1; }
  local tmp rc=0 out
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/narward-nixcheck.XXXXXX")
  (
    nix_env
    export XDG_CACHE_HOME=$tmp/xdg
    cd "$tmp"
    # Created by Nix itself as root; harmless if they already exist.
    mkdir -p /nix/store /nix/var/nix
    echo 'builtins.derivation { name = "narward-nix-smoke-1"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo ok > $out" ]; }' > smoke.nix
    out=$(nix-build --no-out-link smoke.nix 2>"$tmp/log") || { cat "$tmp/log" >&2; exit 1; }
    [[ $(cat "$out") == ok ]] || { echo "unexpected build output in $out" >&2; exit 1; }
    echo smoke > smoke.txt
    nix-store --add smoke.txt >/dev/null 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }
    nix path-info "$out" >/dev/null 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }
  ) || rc=$?
  rm -rf "$tmp"
  return $rc
}

if [[ ${1:-} == --check-nix ]]; then
  check_nix
  exit $?
fi

# ------------------------------------------------------------- Debian ----
pkgs=()
{ command -v nix-store && command -v nix-build && command -v nix; } >/dev/null 2>&1 || pkgs+=(nix-bin)
command -v xz >/dev/null 2>&1 || pkgs+=(xz-utils)
{ command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 || pkgs+=(chromium)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
moto_ok() {
  python3 -c 'import moto.server, boto3, flask, flask_cors' >/dev/null 2>&1
}
if ! moto_ok && ! python3 -m pip --version >/dev/null 2>&1; then pkgs+=(python3-pip); fi

if [[ ${#pkgs[@]} -gt 0 ]]; then
  command -v apt-get >/dev/null 2>&1 || die "missing ${pkgs[*]} and apt-get is not available: install them by hand"
  [[ $(id -u) -eq 0 || ${#SUDO[@]} -gt 0 ]] || die "missing ${pkgs[*]}: run as root (or with sudo) to install them"
  log "installing Debian packages: ${pkgs[*]}"
  aptlog=$(mktemp "${TMPDIR:-/tmp}/narward-apt.XXXXXX")
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)
  if ! "${SUDO[@]}" apt-get update -q -o DPkg::Lock::Timeout=600 >"$aptlog" 2>&1; then
    tail -30 "$aptlog" >&2; die "apt-get update failed (full log: $aptlog)"
  fi
  if ! "${SUDO[@]}" apt-get install "${apt_opts[@]}" "${pkgs[@]}" >>"$aptlog" 2>&1; then
    tail -30 "$aptlog" >&2; die "apt-get install ${pkgs[*]} failed (full log: $aptlog)"
  fi
  rm -f "$aptlog"
  for c in nix-store xz python3; do
    command -v "$c" >/dev/null 2>&1 || die "$c still missing after apt-get install"
  done
  { command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 || die "chromium still missing after apt-get install"
fi

# --------------------------------------------------------------- PyPI ----
if ! moto_ok; then
  log "installing moto[server] with pip"
  piplog=$(mktemp "${TMPDIR:-/tmp}/narward-pip.XXXXXX")
  export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
  pip_args=(install -q 'moto[server]')
  if ! python3 -m pip "${pip_args[@]}" >"$piplog" 2>&1; then
    if grep -q externally-managed-environment "$piplog"; then
      # Debian's system Python (PEP 668): this is a throwaway test machine.
      python3 -m pip "${pip_args[@]}" --break-system-packages >"$piplog" 2>&1 \
        || { tail -30 "$piplog" >&2; die "pip install 'moto[server]' failed (log: $piplog)"; }
    else
      tail -30 "$piplog" >&2; die "pip install 'moto[server]' failed (log: $piplog)"
    fi
  fi
  rm -f "$piplog"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1 || true
  moto_ok || die "moto installed but 'import moto.server, boto3' still fails for $(command -v python3)"
fi

# ---------------------------------------------------------------- Rust ----
command -v cargo >/dev/null 2>&1 || die "cargo not found (install a Rust toolchain)"
cargo clippy --version >/dev/null 2>&1 || die "cargo clippy missing (rustup component add clippy)"
cargo fmt --version >/dev/null 2>&1 || die "cargo fmt missing (rustup component add rustfmt)"

# ---------------------------------------------------------------- Nix -----
if check_nix; then
  log "ok: nix $(nix --version | awk '{print $NF}'), xz, chromium, moto, cargo clippy/fmt"
else
  if [[ ${NARWARD_REQUIRE_NIX:-0} == 1 ]]; then
    die "Nix is installed but does not work as root with NIX_REMOTE=local (see above)"
  fi
  log "WARNING: Nix does not work here (see above); Nix-based tests will be skipped"
fi
