#!/usr/bin/env bash
# make-nix-fixture.sh OUT_DIR [--defects]
#
# Builds a small but realistic, signed Nix binary cache with REAL Nix
# (Debian nix-bin 2.8, run as root against the local /nix/store):
#
#   OUT_DIR/cache/            file:// binary cache (nix-cache-info, *.narinfo, nar/*.nar.xz)
#   OUT_DIR/roots/release-a.txt, release-b.txt   two overlapping "releases" (store paths)
#   OUT_DIR/trusted-key.txt   public key line (narward-test-1:...)
#   OUT_DIR/path-info.json    `nix path-info --all --json --store file://OUT_DIR/cache`
#   OUT_DIR/closure-a.txt     sorted closure of release-a roots (oracle)
#   OUT_DIR/closure-b.txt     sorted closure of release-b roots (oracle)
#   OUT_DIR/garbage.txt       sorted cached paths reachable from no release root
#   OUT_DIR/paths.tsv         attribute name <TAB> store path, for every path made
#
# The signing key pair goes to $NARWARD_FIXTURE_KEY_DIR (default OUT_DIR/keys);
# an existing sk/pk pair there is reused, so re-running keeps signatures stable.
#
# --defects additionally damages the cache the way real caches get damaged:
#   * orphan NAR: the narinfo of `orphan-0.1` is deleted, its NAR stays behind;
#   * missing NAR: the NAR file of the garbage path `app-one-2.9` is deleted,
#     its narinfo stays behind.
# (One garbage path, `tmp-experiment-0.1`, is always uploaded unsigned.)
#
# Store paths are deterministic (input-addressed derivations + one
# content-addressed `nix-store --add`); NAR contents are deterministic too
# (no timestamps, pseudo-random data from awk with a fixed seed).
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR [--defects]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
OUT_ARG=$1; shift
DEFECTS=0
for a in "$@"; do
  case $a in
    --defects) DEFECTS=1 ;;
    *) usage ;;
  esac
done

die() { echo "make-nix-fixture: error: $*" >&2; exit 1; }
command -v nix-build >/dev/null || die "nix-build not found (run scripts/install-test-deps.sh)"
[[ $(id -u) -eq 0 ]] || die "must run as root (Nix is used with NIX_REMOTE=local on /nix/store)"

mkdir -p "$OUT_ARG"
OUT=$(cd "$OUT_ARG" && pwd)
KEY_DIR=${NARWARD_FIXTURE_KEY_DIR:-$OUT/keys}
mkdir -p "$KEY_DIR"
KEY_DIR=$(cd "$KEY_DIR" && pwd)

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/narward-fixture.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

# Nix as root on Debian without a daemon: local store, no sandbox, no build
# users (so the nixbld group is not required), no substituters (no network).
export NIX_REMOTE=local
export XDG_CACHE_HOME=$SCRATCH/xdg-cache
export NIX_CONFIG="${NIX_CONFIG:+$NIX_CONFIG
}build-users-group =
sandbox = false
substituters =
extra-experimental-features = nix-command
narinfo-cache-negative-ttl = 0
narinfo-cache-positive-ttl = 0"
# Keep Nix quiet unless something fails.
nixq() { local log=$SCRATCH/nix.log; if ! "$@" 2>"$log"; then cat "$log" >&2; die "command failed: $*"; fi; }

# ---------------------------------------------------------------- sources --
# Content-addressed path (nix-store --add => CA: fixed:r:sha256:...).
printf '%s\n' \
  '# narward demo configuration (content-addressed store path)' \
  'log_level = "info"' \
  'data_dir = "/var/lib/app-two"' \
  'max_connections = 64' > "$SCRATCH/app-two.conf"
CONF=$(cd "$SCRATCH" && nix-store --add app-two.conf 2>"$SCRATCH/nix.log") \
  || { cat "$SCRATCH/nix.log" >&2; die "nix-store --add failed"; }

cat > "$SCRATCH/fixture.nix" <<'EOF'
{ confPath }:
let
  conf = builtins.storePath confPath;
  # Builders run with sandbox=false but an empty environment: give them the
  # host's coreutils/awk explicitly. Everything written is deterministic.
  mk = { name, script, deps ? [ ], outputs ? [ "out" ] }: builtins.derivation {
    inherit name outputs;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" ("set -e\n" + script) ];
    PATH = "/usr/bin:/bin";
    LC_ALL = "C";
    inherit deps;
  };
  # Writes N lines of readable (very compressible) text.
  text = lines: tag: "awk 'BEGIN{for(i=1;i<=${toString lines};i++) printf \"%s line %06d: the quick brown fox jumps over the lazy dog\\n\", \"${tag}\", i}'";
in rec {
  libbase = mk {
    name = "libbase-2.38";
    script = ''
      mkdir -p $out/lib $out/share/doc/libbase
      printf 'ELF-ish libbase 2.38\n' > $out/lib/libbase.so.6
      ln -s libbase.so.6 $out/lib/libbase.so
      ${text 400 "libbase"} > $out/share/doc/libbase/README
    '';
  };
  libfoo = mk {
    name = "libfoo-1.2"; deps = [ libbase ];
    script = ''
      mkdir -p $out/lib
      printf 'libfoo 1.2\nNEEDED ${libbase}/lib/libbase.so.6\n' > $out/lib/libfoo.so.1.2
      ln -s libfoo.so.1.2 $out/lib/libfoo.so
    '';
  };
  libfoo_old = mk {
    name = "libfoo-1.1"; deps = [ libbase ];
    script = ''
      mkdir -p $out/lib
      printf 'libfoo 1.1\nNEEDED ${libbase}/lib/libbase.so.6\n' > $out/lib/libfoo.so.1.1
      ln -s libfoo.so.1.1 $out/lib/libfoo.so
    '';
  };
  libbar = mk {
    name = "libbar-0.5"; deps = [ libbase ]; outputs = [ "out" "dev" ];
    script = ''
      mkdir -p $out/lib $dev/include $dev/lib/pkgconfig
      printf 'libbar 0.5\nNEEDED ${libbase}/lib/libbase.so.6\n' > $out/lib/libbar.so.0
      printf '#pragma once\nint bar(void);\n' > $dev/include/bar.h
      printf 'prefix=%s\nlibdir=%s/lib\nName: bar\nVersion: 0.5\n' $dev $out > $dev/lib/pkgconfig/bar.pc
    '';
  };
  assets = mk {
    name = "assets-1.0";
    # ~256 KiB of pseudo-random bytes: compresses poorly.
    script = ''
      mkdir -p $out/share/assets
      awk 'BEGIN{srand(20240611); for(i=0;i<262144;i++) printf "%c", int(rand()*256)}' > $out/share/assets/blob.bin
    '';
  };
  app_one = mk {
    name = "app-one-3.0"; deps = [ libfoo libbar ];
    script = ''
      mkdir -p $out/bin $out/share/app-one
      printf '#!/bin/sh\n# links: ${libfoo}/lib/libfoo.so ${libbar}/lib/libbar.so.0\necho app-one 3.0\n' > $out/bin/app-one
      chmod +x $out/bin/app-one
      printf '%s\n' $out > $out/share/app-one/prefix
    '';
  };
  app_one_old = mk {
    name = "app-one-2.9"; deps = [ libfoo_old ];
    script = ''
      mkdir -p $out/bin
      printf '#!/bin/sh\n# links: ${libfoo_old}/lib/libfoo.so\necho app-one 2.9\n' > $out/bin/app-one
      chmod +x $out/bin/app-one
    '';
  };
  app_two = mk {
    name = "app-two-0.9"; deps = [ libfoo assets conf ];
    script = ''
      mkdir -p $out/bin $out/etc
      printf '#!/bin/sh\n# links: ${libfoo}/lib/libfoo.so\nexec true ${assets}/share/assets/blob.bin\n' > $out/bin/app-two
      chmod +x $out/bin/app-two
      ln -s ${conf} $out/etc/app-two.conf
    '';
  };
  tool = mk {
    name = "tool-1.0"; deps = [ libbase ];
    script = ''
      mkdir -p $out/bin
      printf '#!/bin/sh\n# links: ${libbase}/lib/libbase.so.6\necho tool 1.0\n' > $out/bin/tool
      chmod +x $out/bin/tool
    '';
  };
  docs = mk {
    name = "docs-1.0";
    # ~300 KiB of text: compresses very well.
    script = ''
      mkdir -p $out/share/doc/manual
      ${text 4500 "manual"} > $out/share/doc/manual/manual.txt
      printf '<html><body><h1>Manual</h1></body></html>\n' > $out/share/doc/manual/index.html
    '';
  };
  tmp_experiment = mk {
    name = "tmp-experiment-0.1";
    script = "printf 'scratch build, uploaded without a signature\\n' > $out";
  };
  orphan = mk {
    name = "orphan-0.1";
    script = "mkdir -p $out; printf 'this NAR outlives its narinfo\\n' > $out/data";
  };
}
EOF

# ------------------------------------------------------------------ build --
declare -A P
ATTRS=(libbase libfoo libfoo_old libbar libbar.dev assets app_one app_one_old app_two tool docs tmp_experiment orphan)
for attr in "${ATTRS[@]}"; do
  P[$attr]=$(nix-build --no-out-link "$SCRATCH/fixture.nix" --argstr confPath "$CONF" -A "$attr" 2>"$SCRATCH/nix.log") \
    || { cat "$SCRATCH/nix.log" >&2; die "nix-build -A $attr failed"; }
done
P[conf]=$CONF

# ------------------------------------------------------------------- keys --
if [[ -s $KEY_DIR/sk && -s $KEY_DIR/pk ]]; then
  echo "reusing signing key from $KEY_DIR"
else
  nixq nix-store --generate-binary-cache-key narward-test-1 "$KEY_DIR/sk" "$KEY_DIR/pk"
  chmod 600 "$KEY_DIR/sk"
fi
cp "$KEY_DIR/pk" "$OUT/trusted-key.txt"
echo >> "$OUT/trusted-key.txt"   # Nix writes the key without a trailing newline

# ------------------------------------------------------------------ cache --
rm -rf "$OUT/cache" "$OUT/roots"
mkdir -p "$OUT/cache" "$OUT/roots"
CACHE="file://$OUT/cache"
# 1. one path without a signature (copied first, so the signed copy skips it)
nixq nix copy --to "$CACHE?compression=xz" "${P[tmp_experiment]}"
# 2. everything else, signed (closures are copied automatically)
ALL=()
for attr in "${ATTRS[@]}" conf; do [[ $attr == tmp_experiment ]] || ALL+=("${P[$attr]}"); done
nixq nix copy --to "$CACHE?compression=xz&secret-key=$KEY_DIR/sk" "${ALL[@]}"

# ------------------------------------------------------------------ roots --
{
  echo "# release-a: app-one 3.0 and tool 1.0"
  echo "${P[app_one]}"
  echo "${P[tool]}"
} > "$OUT/roots/release-a.txt"
{
  echo "# release-b: app-two 0.9, tool 1.0, docs, libbar headers"
  echo "${P[app_two]}"
  echo "${P[tool]}"
  echo "${P[docs]}"
  echo "${P[libbar.dev]}"
} > "$OUT/roots/release-b.txt"

# ---------------------------------------------------------------- defects --
if [[ $DEFECTS -eq 1 ]]; then
  orphan_hash=$(basename "${P[orphan]}" | cut -c1-32)
  rm -f "$OUT/cache/$orphan_hash.narinfo"
  old_hash=$(basename "${P[app_one_old]}" | cut -c1-32)
  old_url=$(sed -n 's/^URL: //p' "$OUT/cache/$old_hash.narinfo")
  rm -f "$OUT/cache/$old_url"
fi

# ---------------------------------------------------------------- oracles --
roots() { grep -v '^#' "$1"; }
closure() { nix path-info -r --store "$CACHE" $(roots "$1") 2>"$SCRATCH/nix.log" | LC_ALL=C sort \
  || { cat "$SCRATCH/nix.log" >&2; die "nix path-info -r failed"; }; }
closure "$OUT/roots/release-a.txt" > "$OUT/closure-a.txt"
closure "$OUT/roots/release-b.txt" > "$OUT/closure-b.txt"
nix path-info --all --store "$CACHE" 2>"$SCRATCH/nix.log" | LC_ALL=C sort > "$SCRATCH/all.txt" \
  || { cat "$SCRATCH/nix.log" >&2; die "nix path-info --all failed"; }
LC_ALL=C sort -u "$OUT/closure-a.txt" "$OUT/closure-b.txt" > "$SCRATCH/live.txt"
LC_ALL=C comm -23 "$SCRATCH/all.txt" "$SCRATCH/live.txt" > "$OUT/garbage.txt"
nix path-info --all --json --store "$CACHE" 2>"$SCRATCH/nix.log" > "$OUT/path-info.json" \
  || { cat "$SCRATCH/nix.log" >&2; die "nix path-info --json failed"; }
echo >> "$OUT/path-info.json"
# Opening a file:// store creates empty log/ and realisations/ dirs: drop them.
rmdir "$OUT/cache/log" "$OUT/cache/realisations" 2>/dev/null || true
for attr in "${ATTRS[@]}" conf; do printf '%s\t%s\n' "$attr" "${P[$attr]}"; done > "$OUT/paths.tsv"

# ---------------------------------------------------------------- summary --
echo "fixture written to $OUT"
echo "  public key : $(cat "$OUT/trusted-key.txt")"
echo "  secret key : $KEY_DIR/sk"
echo "  narinfos   : $(find "$OUT/cache" -maxdepth 1 -name '*.narinfo' | wc -l)   NARs: $(find "$OUT/cache/nar" -name '*.nar*' | wc -l)   size: $(du -sh "$OUT/cache" | cut -f1)"
echo "  release-a closure: $(wc -l < "$OUT/closure-a.txt") paths; release-b closure: $(wc -l < "$OUT/closure-b.txt") paths"
echo "  garbage (in cache, reachable from no root):"
sed 's/^/    /' "$OUT/garbage.txt"
echo "  unsigned: ${P[tmp_experiment]}"
if [[ $DEFECTS -eq 1 ]]; then
  echo "  defects: orphan NAR of ${P[orphan]} (narinfo deleted); missing NAR for ${P[app_one_old]}"
fi
